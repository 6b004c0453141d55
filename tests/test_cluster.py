"""Runs on a Ray cluster (`FLOWER_RAY_ADDRESS`): a real two-node cluster started on this machine
(a head and a second node, one CPU each), a 2x2 sweep from the command line and the app's Sweep
button training on both nodes, cancel before and after a run started, a killed task read as
`interrupted` while the rest finish, and features computed in shards equal to one machine's.
Without Ray installed these are skipped; an unreachable cluster is tested without Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flower_core.cluster import ADDRESS_ENV, CPUS_ENV
from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.groups import group as groups
from flower_core.store.runs import ACTIVE_STATES, HISTORY, Run, RunStore, peek_status, read_history
from flower_core.training import jobs

from .conftest import wait_until

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(
    ray is None, reason="Ray is not installed (pip install -r requirements-cluster.txt)"
)


def on_cluster(test):
    """A test on the real two-node cluster: in the full suite only, and only with Ray installed."""
    return pytest.mark.cluster(pytest.mark.slow(needs_ray(test)))


TINY = {"backbone": "mobilenet", "weights": "none", "image_size": 32}
ROOT = Path(__file__).resolve().parent.parent


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_cluster_queues_nothing_and_loses_no_queued_run(
    synthetic_dataset, monkeypatch, capsys
):
    queued = jobs.submit(make_config("base", epochs=1, **TINY), synthetic_dataset, start=False)
    monkeypatch.setenv(ADDRESS_ENV, f"127.0.0.1:{_closed_port()}")
    with pytest.raises(FlowerError, match=r"^the Ray cluster at 127\.0\.0\.1:\d+ cannot be reached") as error:
        jobs.submit(make_config("base", epochs=1, **TINY), synthetic_dataset)
    assert "\n" not in str(error.value)
    assert RunStore().run_dirs() == [queued]

    assert jobs.run_worker(idle_s=0) == 0
    status = peek_status(queued)
    assert status.state == "queued" and ADDRESS_ENV in status.message
    assert status.message.startswith("waiting: ") and "\n" not in status.message
    [line] = capsys.readouterr().err.strip().splitlines()
    assert ADDRESS_ENV in line


def test_a_bad_address_or_resource_setting_is_one_line(monkeypatch):
    from flower_core import cluster

    with pytest.raises(FlowerError, match="must be host:port, ray://host:port or auto. Received: 'nowhere'"):
        cluster.check_reachable("nowhere")
    monkeypatch.setenv(CPUS_ENV, "half")
    with pytest.raises(FlowerError, match=f"{CPUS_ENV} must be a whole number, 1 or more. Received: 'half'"):
        cluster.run_resources(type("NoRay", (), {"nodes": staticmethod(list)}))


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a second node on this machine, one CPU each, as `ray start` would make them."""
    from ray.cluster_utils import Cluster

    store = 80 * 1024**2
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    cluster.add_node(num_cpus=1, object_store_memory=store)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def on_ray(ray_cluster, monkeypatch) -> set[str]:
    """Runs go to the two-node cluster, one CPU each; returns its node ids."""
    monkeypatch.setenv(ADDRESS_ENV, ray_cluster.address)
    monkeypatch.setenv(CPUS_ENV, "1")
    return {node.node_id for node in ray_cluster.list_all_nodes()}


def _nodes_of(run_dirs) -> set[str]:
    return {Run.open(run_dir).facts.node for run_dir in run_dirs}


@on_cluster
def test_a_2x2_sweep_from_the_command_line_trains_on_both_nodes(on_ray, synthetic_dataset):
    command = [sys.executable, "-m", "flower_core", "sweep", "--data", str(synthetic_dataset)]
    options = ["--backbone", "mobilenet", "--weights", "none", "--image-size", "32", "--epochs", "1"]
    grid = ["--grid", "dropout=0.1,0.3;learning_rate=1e-3,1e-4", "--wait", "--json"]
    result = subprocess.run(
        [*command, *options, *grid], cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    json.loads(result.stdout.strip().splitlines()[-1])
    run_dirs = RunStore().run_dirs()
    assert len(run_dirs) == 4 and {peek_status(d).state for d in run_dirs} == {"done"}
    assert _nodes_of(run_dirs) == on_ray
    assert {Run.open(d).facts.host for d in run_dirs} == {os.uname().nodename}


@on_cluster
def test_the_sweep_button_trains_on_the_cluster(on_ray, synthetic_dataset, monkeypatch):
    from .test_app_pages import open_page

    monkeypatch.setenv("FLOWER_DATA", str(synthetic_dataset))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    at = open_page("pages/2_Train.py")
    at.selectbox(key="sweep_base_backbone").set_value("mobilenet")
    at.selectbox(key="sweep_weights").set_value("none")
    at.selectbox(key="sweep_size").set_value(32)
    at.text_input(key="sweep_values_dropout").set_value("0.1,0.3").run()
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [record] = groups.list_groups()
    rows = groups.wait_group(None, record["id"], poll_s=0.5, timeout_s=500)
    assert [row["state"] for row in rows] == ["done", "done"]
    assert _nodes_of(groups.group_run_dirs(None, record["id"])) == on_ray


@on_cluster
def test_cancel_and_a_killed_task_on_the_cluster(on_ray, synthetic_dataset):
    endless = make_config("base", epochs=100_000, patience=100_000, **TINY)
    first, second = (jobs.submit(endless, synthetic_dataset, start=False) for _ in range(2))
    jobs.start_worker()
    # both nodes busy, each with a run that has kept a model
    wait_until(lambda: all(read_history(d) for d in (first, second)), timeout=300)
    short, doomed = (jobs.submit(make_config("base", epochs=1, **TINY), synthetic_dataset) for _ in range(2))
    wait_until(lambda: "Ray cluster" in peek_status(doomed).message, timeout=60)

    jobs.cancel(doomed)  # still waiting for a node: Ray never starts it
    wait_until(lambda: peek_status(doomed).state == "cancelled", timeout=60)
    os.kill(peek_status(first).pid, signal.SIGKILL)  # its node frees: the short run trains there
    jobs.cancel(second)  # running: it stops within one batch and keeps its model
    wait_until(lambda: not any(peek_status(d).state in ACTIVE_STATES for d in (first, second, short)))

    assert peek_status(first).state == "interrupted"
    assert peek_status(second).state == "cancelled"
    assert peek_status(second).message.startswith("cancelled by request; the model of epoch")
    assert peek_status(short).state == "done"
    assert not (doomed / HISTORY).exists() and peek_status(doomed).message == "cancelled before it started"
    wait_until(lambda: not jobs.worker_active(), timeout=60)


@on_cluster
def test_sharded_features_equal_one_machines(on_ray, synthetic_dataset, tmp_path):
    from flower_core.data.dataset import fingerprint, scan_dataset
    from flower_core.models.classifier import build_classifier
    from flower_core.models.features import FeatureCache
    from flower_core.models.photo_features import cached_features
    from flower_core.models.sharded import sharded_features

    config = make_config("base", **TINY)
    dataset = scan_dataset(synthetic_dataset)
    files, stamp = dataset.files, fingerprint(dataset)
    model = build_classifier(config, len(dataset.class_names)).feature_model
    one, _ = cached_features(FeatureCache(tmp_path / "one"), model, config, dataset.root, files, stamp)
    cache = FeatureCache(tmp_path / "sharded")
    try:
        shards, hit = sharded_features(cache, None, config, dataset.root, files, stamp, shards=2)
    finally:
        ray.shutdown()
    assert not hit and shards.shape == one.shape
    np.testing.assert_allclose(shards, one, rtol=1e-5, atol=1e-5)
    [entry] = cache.entries()
    assert entry["key"] == FeatureCache(tmp_path / "one").entries()[0]["key"]
    assert set(entry["nodes"]) == on_ray
    assert sorted(p.name for p in cache.entry(entry["key"]).iterdir()) == ["features.npy", "index.json"]
