"""On the real "Flowers Recognition" photos with ImageNet MobileNet weights (skipped when absent).

The frozen MobileNet's features take about a minute per preprocessing mode at 224 px on 2 cores
(`base`) and about 3 times that at 384 px (`best`); the heads train in seconds per epoch. The
full figures (3 seeds) are in docs/RESULTS.md.
"""

import pytest

from flower_core.config import make_config
from flower_core.store.runs import read_json
from flower_core.training.jobs import train_new_run

from .conftest import REAL_DATA, WEIGHTS_DIR, needs_mobilenet_weights, needs_real_data

pytestmark = [pytest.mark.real_data, needs_real_data, needs_mobilenet_weights]


@pytest.fixture
def real_weights(monkeypatch):
    monkeypatch.setenv("FLOWER_WEIGHTS_DIR", str(WEIGHTS_DIR))


def _train(preset, runs, split=None, **overrides):
    config = make_config(preset, backbone="mobilenet", weights="imagenet", **overrides)
    run_dir = train_new_run(config, REAL_DATA, runs, split_file=split)
    return run_dir, read_json(run_dir / "metrics.json")


def test_best_beats_base_on_the_same_split(real_weights, tmp_path):
    base_dir, base = _train("base", tmp_path / "runs")
    _, best = _train("best", tmp_path / "runs", split=base_dir / "split.json")
    print(f"base {base['test_accuracy']:.4f}, best {best['test_accuracy']:.4f}")
    assert base["test_accuracy"] > 0.75, "transfer from ImageNet should work well above chance"
    assert best["test_accuracy"] > base["test_accuracy"] + 0.01
