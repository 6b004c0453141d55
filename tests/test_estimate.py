"""Honest estimates: this machine's own speed (measured, else calibrated once and kept on disk),
a range, recorded with each run beside its actual time; one ETA and one extraction count for
the whole run."""

import dataclasses
import json

import pytest

from flower_core.config import make_config
from flower_core.store.runs import read_status
from flower_core.training import estimate
from flower_core.training.estimate import SPEED_SOURCES, SPEEDS_FILE, backbone_speed, estimate_run
from flower_core.training.jobs import create_run
from flower_core.training.progress import ExtractionProgress
from tests.conftest import wait_until


def test_a_backbone_is_calibrated_once_on_the_photos_and_its_speed_kept_on_disk(
    synthetic_dataset, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    assert backbone_speed("mobilenet", 64, cache).source == "typical"
    calibrated = backbone_speed("mobilenet", 64, cache, calibrate_on=synthetic_dataset)
    assert calibrated.source == "calibrated" and calibrated.photos_per_s > 0
    assert calibrated.slowest < calibrated.photos_per_s < calibrated.fastest
    [recorded] = json.loads((cache / SPEEDS_FILE).read_text()).values()
    assert recorded["photos_per_s"] == pytest.approx(calibrated.photos_per_s)
    assert recorded["setup_s"] == calibrated.setup_s > 0  # building and tracing the model, timed here

    def no_second_timing(*_):
        raise AssertionError("timed the backbone again")

    monkeypatch.setattr(estimate, "_timed_extraction", no_second_timing)
    again = backbone_speed("mobilenet", 64, cache, calibrate_on=synthetic_dataset)  # another page, process
    assert again.source == "calibrated" and again.photos_per_s == pytest.approx(
        calibrated.photos_per_s, rel=1e-3
    )
    assert set(SPEED_SOURCES) == {"measured", "calibrated", "typical"}
    assert [p.name for p in cache.iterdir()] == [SPEEDS_FILE]  # the timing's features were thrown away


def test_an_estimate_is_a_range_and_says_what_it_rests_on(synthetic_dataset, tmp_path):
    config = make_config("base", backbone="mobilenet", image_size=224, epochs=30, patience=3)
    run = estimate_run(config, synthetic_dataset, runs_root=tmp_path / "runs", cache_root=tmp_path / "cache")
    assert run["low_s"] < run["seconds"] < run["high_s"] and run["passes"] == run["photos"]
    text = estimate.estimate_text(run)
    assert text.startswith("about ") and SPEED_SOURCES["typical"] in text and "fallback" not in text
    assert estimate.format_range(40, 150) == "40 s – 2 min" and estimate.format_range(130, 250) == "2–4 min"


def test_a_pair_runs_each_member_on_every_photo_and_skips_what_a_members_cache_holds(
    synthetic_dataset, tmp_path
):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    config = make_config("best", backbone="lite0_mobilenet", image_size=224)
    lite, mobilenet = (backbone_speed(name, 224, cache) for name in ("efficientnet_lite0", "mobilenet"))
    pair = backbone_speed("lite0_mobilenet", 224, cache)
    assert pair.photos_per_s == pytest.approx(1 / (1 / lite.photos_per_s + 1 / mobilenet.photos_per_s))
    cold = estimate_run(config, synthetic_dataset, runs_root=runs, cache_root=cache)
    assert cold["passes"] == pytest.approx(cold["photos"])
    # Lite0's own run cached the features of every photo: only MobileNet's share is left.
    entry = cache / "lite0-entry"
    entry.mkdir(parents=True)
    meta = {"backbone": "efficientnet_lite0", "image_size": 224, "preprocessing": "lite", "kind": "clean"}
    meta |= {"pooling": "avg", "weights": "imagenet", "data_root": str(synthetic_dataset.resolve())}
    (entry / "index.json").write_text(json.dumps({**meta, "photos": cold["photos"]}))
    warm = estimate_run(config, synthetic_dataset, runs_root=runs, cache_root=cache)
    assert warm["passes"] == pytest.approx(cold["photos"] * pair.photos_per_s / mobilenet.photos_per_s)


def test_a_run_records_its_estimate_and_its_error_is_measured(synthetic_dataset, tmp_path):
    config = make_config("base", backbone="mobilenet", weights="none", image_size=32, epochs=1)
    run_dir = create_run(config, synthetic_dataset, tmp_path / "runs")
    status = read_status(run_dir)
    recorded = status.estimate
    assert recorded.low_s <= recorded.seconds <= recorded.high_s and recorded.source == "typical"
    assert estimate.run_eta(status) == recorded.seconds  # queued: the ETA is the estimate
    assert estimate.estimate_error(status) is None
    done = dataclasses.replace(
        status,
        state="done",
        started="2026-01-01T00:00:00+00:00",
        finished="2026-01-01T00:00:20+00:00",
        estimate=dataclasses.replace(recorded, seconds=25.0, low_s=15.0, high_s=30.0),
    )
    error = estimate.estimate_error(done)
    assert error["actual_s"] == 20.0 and error["error"] == pytest.approx(0.25) and error["in_range"]


def test_extraction_counts_once_over_its_passes_and_skips_what_the_cache_holds():
    clock = iter(float(t) for t in range(100)).__next__
    progress = ExtractionProgress(
        {"train features": 100, "validation features": 20, "test features": 20}, 10.0, clock
    )
    first = progress.update("train features", 50, 100)
    assert (first["photos_done"], first["photos_total"]) == (50, 140)
    assert first["photos_per_s"] == 50.0 and first["eta_s"] == 1.8  # 90 passes left at 50 a second
    progress.update("train features", 100, 100)
    progress.finish("train features")
    progress.finish("validation features")  # found in the cache: nothing to compute
    test = progress.update("test features", 10, 20)
    assert (test["photos_done"], test["photos_total"]) == (110, 120)
    assert test["message"].startswith("computing features 110/120 (test features)")


@pytest.mark.calibrates
def test_a_page_s_calibration_runs_in_the_background_and_the_next_estimate_uses_it(
    synthetic_dataset, tmp_path
):
    cache = tmp_path / "cache"
    first = backbone_speed("mobilenet", 48, cache, calibrate_on=synthetic_dataset, background=True)
    assert first.source == "typical" and first.calibrating  # the page does not wait for it
    run = estimate_run(
        make_config("base", backbone="mobilenet", image_size=48),
        synthetic_dataset,
        runs_root=tmp_path / "runs",
        cache_root=cache,
        calibration="background",
    )
    assert run["calibrating"] and "timing the backbone here now" in estimate.estimate_text(run)
    wait_until(lambda: estimate.calibrated_speed("mobilenet", 48, cache) is not None, timeout=120)
    assert backbone_speed("mobilenet", 48, cache).source == "calibrated"


@pytest.mark.calibrates
def test_one_calibration_runs_at_a_time_and_the_next_is_asked_for_again(synthetic_dataset, tmp_path):
    cache = tmp_path / "cache"

    def ask(backbone: str):  # what each of a page's estimates does
        return backbone_speed(backbone, 48, cache, calibrate_on=synthetic_dataset, background=True)

    wait_until(lambda: estimate._CALIBRATION is None or not estimate._CALIBRATION.is_alive(), timeout=120)
    assert ask("mobilenet").calibrating and ask("mobilenet_v2").calibrating
    running = estimate._CALIBRATION
    assert running.name == "calibrate-mobilenet"  # the second was not started beside it
    wait_until(lambda: not running.is_alive(), timeout=120)
    assert estimate.calibrated_speed("mobilenet", 48, cache) is not None
    assert estimate.calibrated_speed("mobilenet_v2", 48, cache) is None
    wait_until(lambda: ask("mobilenet_v2").source == "calibrated", timeout=120)


def test_a_head_on_feature_maps_costs_by_the_maps_positions(synthetic_dataset, tmp_path):
    """MobileNet's maps are 5 x 5 at 160 px and 7 x 7 at 224 px: the head's epochs cost 25/49."""
    training = {
        size: estimate_run(
            make_config("dropout20", backbone="mobilenet", image_size=size, augment_cache="maps"),
            synthetic_dataset,
            runs_root=tmp_path / "runs",
            cache_root=tmp_path / "cache",
            photos=1000,
        )["training_s"]
        for size in (160, 224)
    }
    assert training[160] / training[224] == pytest.approx(25 / 49, rel=1e-3)
