"""The Ray cluster the queue sends runs to when `FLOWER_RAY_ADDRESS` names one (docs/OPERATIONS.md).

Without that variable nothing here runs and Ray need not be installed: every function that needs
Ray imports it when called (`requirements-cluster.txt` installs it). The run folder stays the
contract: every node mounts the runs folder and the feature cache at the same paths, and the
`FLOWER_*` settings of the process that connects travel with each task (`forwarded_env`).
"""

from __future__ import annotations

import os
import socket

from flower_core.errors import FlowerError

ADDRESS_ENV = "FLOWER_RAY_ADDRESS"
# CPUs each run reserves on its node (TensorFlow's thread pools are sized to match), and GPUs:
# by default one where the cluster has any, else none.
CPUS_ENV = "FLOWER_RAY_CPUS"
DEFAULT_RUN_CPUS = 2
GPUS_ENV = "FLOWER_RAY_GPUS"
# Ray waits forever for a head that does not answer, so the address is tried first, this long.
CONNECT_TIMEOUT_S = 5.0
# What a task needs of the environment of the process that sent it.
_FORWARDED = ("KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL")
_INSTALL = "pip install -r requirements-cluster.txt"


def address() -> str | None:
    """The cluster's address (`FLOWER_RAY_ADDRESS`), or `None` when runs train on this machine."""
    return os.environ.get(ADDRESS_ENV, "").strip() or None


def check_reachable(addr: str | None = None) -> None:
    """Raise a one-line `FlowerError` when the head at `addr` (default `address()`) does not
    answer; nothing without an address, or for `auto` (which Ray looks up on this machine)."""
    addr = addr or address()
    if not addr or addr == "auto":
        return
    host, _, port = addr.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except ValueError:
        raise FlowerError(
            f"{ADDRESS_ENV} must be host:port, ray://host:port or auto. Received: {addr!r}"
        ) from None
    except OSError as error:
        raise _unreachable(addr, error) from None


def _unreachable(addr: str, error: BaseException) -> FlowerError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return FlowerError(
        f"the Ray cluster at {addr} cannot be reached ({reason}); start it (`ray start --head`) or "
        f"unset {ADDRESS_ENV}. Queued runs stay queued"
    )


def forwarded_env() -> dict[str, str]:
    """The variables every task gets from the process that sends it: `FLOWER_*` (runs, cache,
    weights, allowed roots; the address, so that a run on the cluster shards its features) and
    Keras' and TensorFlow's own."""
    return {
        name: value for name, value in os.environ.items() if name.startswith("FLOWER_") or name in _FORWARDED
    }


def connect(addr: str | None = None):
    """Ray, connected to the cluster at `addr` (default `address()`); one line when it cannot be."""
    addr = addr or address()
    if not addr:
        raise FlowerError(f"no Ray cluster named: set {ADDRESS_ENV} (e.g. 127.0.0.1:6379)")
    try:
        import ray
    except ImportError:
        raise FlowerError(f"{ADDRESS_ENV} is set but Ray is not installed: {_INSTALL}") from None
    if ray.is_initialized():  # a task on the cluster, or a process already connected
        return ray
    check_reachable(addr)
    try:
        ray.init(
            address=addr,
            runtime_env={"env_vars": forwarded_env()},
            log_to_driver=False,
            logging_level="WARNING",
        )
    except (ConnectionError, RuntimeError) as error:
        raise _unreachable(addr, error) from None
    return ray


def run_resources(ray) -> dict[str, float]:
    """What each run reserves: `FLOWER_RAY_CPUS` CPUs (default `DEFAULT_RUN_CPUS`, at most what
    the largest node has, so a run always fits somewhere) and `FLOWER_RAY_GPUS` GPUs (default one
    where the cluster has any)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    largest = max((resources.get("CPU", 0) for resources in nodes), default=1) or 1
    cpus = _count(CPUS_ENV, DEFAULT_RUN_CPUS, minimum=1)
    gpus = _count(GPUS_ENV, 1 if any(r.get("GPU", 0) for r in nodes) else 0, minimum=0)
    return {"num_cpus": min(cpus, largest), "num_gpus": gpus}


def _count(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise FlowerError(f"{name} must be a whole number, {minimum} or more. Received: {raw!r}")
    return int(raw)


def limit_threads(cpus: float) -> None:
    """Size TensorFlow's thread pools to the CPUs a task reserved (before TensorFlow starts them)."""
    import tensorflow as tf

    threads = max(1, int(cpus))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def alive_nodes(ray) -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))
