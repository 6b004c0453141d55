"""What every benchmark shares: the machine description printed with each figure, a timer,
peak memory and a small dataset to run on.

A figure is only comparable with the machine and the load it was measured under, so every JSON
line carries the CPU model, the cores this process may use, the TensorFlow and Keras versions and
the load average at the moment the figure was taken.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notes from building one model per run

# CPU features that decide how fast fp32 convolutions and matmuls can be.
_SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def _cpuinfo() -> tuple[str, list[str]]:
    """The first CPU's model name and which of `_SIMD_FLAGS` it has."""
    try:
        fields = dict(
            line.split(":", 1)
            for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
            if ":" in line
        )
    except OSError:
        return platform.processor() or "unknown", []
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    return fields.get("model name", "unknown"), [f for f in _SIMD_FLAGS if f in flags]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews every figure)."""
    return [round(v, 2) for v in os.getloadavg()]


def machine() -> dict:
    """CPU model and SIMD flags, usable cores, TensorFlow, Keras and Python versions."""
    model, flags = _cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "simd": flags,
        "cores": cores,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def emit(bench: str, **figure) -> dict:
    """Print one figure as one JSON line, with the machine, the time and the load average now."""
    line = {
        "bench": bench,
        **figure,
        "loadavg": load_average(),
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    print(json.dumps(line), flush=True)
    return line


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far: unlike wall time, barely inflated when
    other work shares the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """`with Stopwatch() as t: ...` then `t.seconds` (wall) and `t.cpu_seconds` (this process)."""

    def __enter__(self) -> Stopwatch:
        self.started, self.cpu_started = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = cpu_seconds() - self.cpu_started


def dataset_root(per_class: int, size: int, workdir: Path) -> tuple[Path, str]:
    """The real photos when `FLOWER_DATA` is set, else a generated synthetic set in `workdir`.

    Returns the folder and a word for the report ("real" or "synthetic").
    """
    real = os.environ.get("FLOWER_DATA")
    if real:
        return Path(real), "real"
    from flower_core.data.synthetic import generate

    out = workdir / "synthetic"
    generate(out, per_class=per_class, size=size, seed=0)
    return out, "synthetic"


def subset_folder(root: Path, per_class: int | None, workdir: Path) -> Path:
    """A folder of symlinks to the first `per_class` photos of each class (sorted), or `root`."""
    if not per_class:
        return root
    from flower_core.data.dataset import list_candidates

    classes, candidates = list_candidates(root)
    out = workdir / f"subset{per_class}"
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)
        for rel in candidates[name][:per_class]:
            link = out / rel
            if not link.exists():
                link.symlink_to((root / rel).resolve())
    return out


def worker_pid(runs: Path) -> int | None:
    """The pid of the training worker of `runs`, if one runs (Linux and macOS: pgrep)."""
    found = subprocess.run(
        ["pgrep", "-f", f"flower_core worker --runs {runs}"], capture_output=True, text=True
    ).stdout.split()
    return int(found[0]) if found else None


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` now, in MiB (Linux: /proc)."""
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return round(kib / 1024, 1)


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks process `pid` has used (Linux: /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_until_idle(pid: int, timeout: float = 600) -> float:
    """Seconds until the worker's CPU time stops growing for a second (its warm-up is over)."""
    started = time.perf_counter()
    last = cpu_ticks(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(1)
        now = cpu_ticks(pid)
        if now - last <= 2:
            return time.perf_counter() - started
        last = now
    raise SystemExit("the worker did not settle")
