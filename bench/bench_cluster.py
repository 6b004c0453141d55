"""Runs and feature extraction on a local Ray cluster (`FLOWER_RAY_ADDRESS`): N queued runs on one
node of `--cpus` CPUs against the same runs on two nodes of `--cpus` CPUs each (runs per minute and
their ratio), then the clean features of a generated set in one process against two shards on
the two nodes (`models.sharded`). The nodes are started on this machine (`ray.cluster_utils`), so
two nodes can be no faster than this machine's cores allow.

    python bench/bench_cluster.py --runs 4 --cpus 1 --photos 40 --image-size 96
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit

# isort: split
import ray
from ray.cluster_utils import Cluster

from flower_core.cluster import ADDRESS_ENV, CPUS_ENV
from flower_core.config import make_config
from flower_core.data.synthetic import generate
from flower_core.store.runs import ACTIVE_STATES, Run, RunStore, peek_status
from flower_core.training import jobs

STORE_BYTES = 80 * 1024**2


def _cluster(nodes: int, cpus: int) -> Cluster:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": cpus, "object_store_memory": STORE_BYTES}
    )
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus, object_store_memory=STORE_BYTES)
    cluster.wait_for_nodes()
    return cluster


def _runs(nodes: int, args, data: Path, workdir: Path) -> float:
    """Queue `args.runs` runs, let the cluster train them, emit runs per minute; returns seconds."""
    cluster = _cluster(nodes, args.cpus)
    os.environ[ADDRESS_ENV] = cluster.address
    runs = workdir / f"runs-{nodes}"
    config = make_config("base", backbone="mobilenet", weights="none", image_size=args.image_size, epochs=1)
    try:
        started = time.monotonic()
        for _ in range(args.runs):
            jobs.submit(config, data, runs, start=False)
        jobs.start_worker(runs)
        run_dirs = RunStore(runs).run_dirs()
        while any(peek_status(d).state in ACTIVE_STATES for d in run_dirs):
            time.sleep(0.5)
        seconds = time.monotonic() - started
        states = sorted({peek_status(d)["state"] for d in run_dirs})
        nodes_used = len({Run.open(d).facts.node for d in run_dirs})
        emit(
            "cluster_runs",
            nodes=nodes,
            cpus_per_node=args.cpus,
            runs=args.runs,
            seconds=round(seconds, 1),
            runs_per_minute=round(60 * args.runs / seconds, 2),
            nodes_used=nodes_used,
            states=states,
        )
        return seconds
    finally:
        while jobs.worker_active(runs):
            time.sleep(0.5)
        cluster.shutdown()


def _extraction(args, workdir: Path) -> None:
    """Clean features of a generated set in this process, then in two shards on two nodes."""
    from flower_core.data.dataset import fingerprint, scan_dataset
    from flower_core.models.classifier import build_classifier
    from flower_core.models.features import FeatureCache
    from flower_core.models.photo_features import cached_features
    from flower_core.models.sharded import sharded_features

    root = workdir / "extract"
    generate(root, per_class=args.photos, size=160, seed=0)
    dataset = scan_dataset(root)
    stamp = fingerprint(dataset)
    config = make_config("base", backbone="mobilenet", weights="none", image_size=args.image_size)
    model = build_classifier(config, len(dataset.class_names)).feature_model
    started = time.monotonic()
    cached_features(FeatureCache(workdir / "one"), model, config, root, dataset.files, stamp)
    one = time.monotonic() - started
    cluster = _cluster(2, args.cpus)
    os.environ[ADDRESS_ENV] = cluster.address
    try:
        started = time.monotonic()
        sharded_features(
            FeatureCache(workdir / "sharded"), None, config, root, dataset.files, stamp, shards=2
        )
        two = time.monotonic() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    emit(
        "cluster_sharded_extraction",
        photos=len(dataset.files),
        image_size=args.image_size,
        one_process_s=round(one, 1),
        two_shards_s=round(two, 1),
        speedup=round(one / two, 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs queued at once (default 4)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each node, and of each run (default 1)")
    parser.add_argument("--photos", type=int, default=40, help="photos per class to extract (default 40)")
    parser.add_argument("--image-size", type=int, default=96, help="pixels per side (default 96)")
    args = parser.parse_args()
    os.environ[CPUS_ENV] = str(args.cpus)
    os.environ["FLOWER_WORKER_IDLE_S"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["FLOWER_CACHE"] = str(workdir / "cache")
        data = workdir / "runs-data"
        generate(data, per_class=8, size=96, seed=0)
        one = _runs(1, args, data, workdir)
        two = _runs(2, args, data, workdir)
        emit("cluster_throughput_ratio", two_nodes_over_one=round(one / two, 2), runs=args.runs)
        _extraction(args, workdir)


if __name__ == "__main__":
    main()
