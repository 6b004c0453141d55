"""The feature cache: what its key depends on, hits across restarts, two processes building one
entry at once, augmented views, the same accuracy as end-to-end training, and the mirrored
strategy on a CPU split into two devices."""

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flower_core.config import make_config
from flower_core.data.dataset import fingerprint, scan_dataset
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.classifier import build_classifier
from flower_core.models.features import (
    FeatureCache,
    _compiled,
    cache_key,
    cached_maps,
    cached_views,
    extract_clean,
)
from flower_core.models.photo_features import cached_features
from flower_core.store.runs import Run, read_json, read_status
from flower_core.training.jobs import train_new_run

from .conftest import WEIGHTS_DIR, needs_mobilenet_weights

ROOT = Path(__file__).resolve().parents[1]
KEY_BASE = dict(
    backbone="mobilenet", weights="imagenet", image_size=96, preprocessing="rescale", pooling="max"
)
KEY_FILES = ["daisy/1.jpg", "rose/2.jpg"]


def _key(fp="fingerprint-a", preset="base", views=0, maps=False, **changes):
    return cache_key(make_config(preset, **{**KEY_BASE, **changes}), fp, KEY_FILES, views=views, maps=maps)


@pytest.fixture(scope="module")
def tiny_features():
    """A random-init MobileNet at 64 px: cheap; its features are tiny (about 1e-20) but vary."""
    return build_classifier(make_config("base", backbone="mobilenet", weights="none", image_size=64), 5)


@pytest.fixture(scope="module")
def photos(synthetic_dataset):
    dataset = scan_dataset(synthetic_dataset)
    return dataset.files[::12], fingerprint(dataset)


@pytest.mark.parametrize(
    "change",
    [
        {"fp": "fingerprint-b"},
        {"backbone": "vgg16"},
        {"weights": "none"},
        {"image_size": 128},
        {"preprocessing": "imagenet"},
        {"pooling": "avg"},
        {"views": 5},
        {"maps": True},
    ],
)
def test_cache_key_changes_with_what_changes_the_features(change):
    assert _key(**change) != _key()


@pytest.mark.parametrize(
    "change",
    [
        {"preset": "dropout20"},
        {"seed": 7},
        {"epochs": 3},
        {"batch_size": 64},
        {"learning_rate": 0.01},
        {"dense_units": [16]},
        {"batchnorm": True},
        {"cache_features": False},
    ],
)
def test_cache_key_ignores_head_and_training_settings(change):
    assert _key(**change) == _key()


@pytest.mark.parametrize(
    "files",
    [KEY_FILES[:1], [*KEY_FILES, "tulip/3.jpg"], KEY_FILES[::-1]],
    ids=["fewer", "more", "reordered"],
)
def test_cache_key_follows_the_file_list(files):
    """Two runs on one dataset with other splits must not share features: each row of an entry
    is the photo at that place in its file list."""
    config = make_config("base", **KEY_BASE)
    same_dataset = cache_key(config, "fingerprint-a", KEY_FILES)
    assert cache_key(config, "fingerprint-a", list(KEY_FILES)) == same_dataset
    assert cache_key(config, "fingerprint-a", files) != same_dataset, (
        f"the file lists {KEY_FILES} and {files} of one dataset share a cache key: the key ignores the files"
    )


def test_feature_maps_are_keyed_before_pooling():
    assert _key(maps=True, pooling="avg") == _key(maps=True, pooling="max")


def test_cache_key_follows_the_weights_file(tmp_path):
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"first")
    first = _key(weights=str(weights))
    assert _key(weights=str(weights)) == first
    weights.write_bytes(b"second version")
    assert _key(weights=str(weights)) != first


def test_the_cache_pass_holds_a_batch_normalized_backbone_as_constants_and_gives_its_features():
    """Its weights as graph constants (so TensorFlow folds each batch normalization into its
    convolution), the pass still gives the model's own features, to float rounding, with
    normalization statistics far from the identity; VGG16, with none to fold, keeps its
    variables."""
    import keras

    model = build_classifier(make_config("base", backbone="mobilenet", weights="none", image_size=32), 5)
    features = model.feature_model
    rng = np.random.default_rng(0)
    for layer in features.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 1, beta.shape),
                 rng.normal(0, 1, mean.shape), rng.uniform(0.5, 2, variance.shape)]
            )  # fmt: skip
    forward = _compiled(features)
    pixels = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = features(pixels, training=False).numpy()
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(forward(pixels).numpy(), expected, rtol=0, atol=1e-5 * scale)
    assert forward.get_concrete_function().captured_inputs == []
    vgg = build_classifier(
        make_config("base", backbone="vgg16", weights="none", image_size=32), 5
    ).feature_model
    assert len(_compiled(vgg).get_concrete_function().captured_inputs) == len(vgg.weights)


def test_hit_restart_entries_and_clear(tiny_features, synthetic_dataset, photos, tmp_path):
    files, fp = photos
    config = make_config("base", backbone="mobilenet", weights="none", image_size=64)

    def features(cache):
        return cached_features(cache, tiny_features.feature_model, config, synthetic_dataset, files, fp)

    built, hit = features(FeatureCache(tmp_path / "cache"))
    assert not hit and built.shape == (len(files), 1024)
    again, hit = features(FeatureCache(tmp_path / "cache"))
    assert hit and np.array_equal(again, built)
    cache = FeatureCache(tmp_path / "cache")  # a restart: a new instance over the same folder
    after_restart, hit = features(cache)
    assert hit and np.array_equal(after_restart, built)
    [entry] = cache.entries()
    assert entry["key"] == cache_key(config, fp, files) and entry["photos"] == len(files)
    assert entry["kind"] == "clean" and entry["bytes"] >= built.nbytes
    assert cache.clear() >= built.nbytes
    assert cache.entries() == [] and cache.size_bytes() == 0
    assert features(cache)[1] is False


def test_a_changed_file_list_computes_only_the_photos_not_seen(
    tiny_features, synthetic_dataset, photos, tmp_path
):
    """After a fix (a photo excluded, one added) the run cache misses, but only the new photo goes
    through the backbone, and every row is still the photo's own features."""
    files, fp = photos
    config = make_config("base", backbone="mobilenet", weights="none", image_size=64)
    cache, computed = FeatureCache(tmp_path / "cache"), []

    def features(listed):
        totals = []
        rows, hit = cached_features(
            cache,
            tiny_features.feature_model,
            config,
            synthetic_dataset,
            listed,
            fp,
            lambda _, n: totals.append(n),
        )
        computed.append(max(totals, default=0))
        return rows, hit

    before, _ = features(files)
    added = next(f for f in scan_dataset(synthetic_dataset).files if f not in files)
    after, hit = features([added, *files[1:]])
    assert not hit and computed == [len(files), 1]
    np.testing.assert_array_equal(after[1:], before[1:])
    alone, _ = features([added])
    np.testing.assert_array_equal(alone[0], after[0])
    assert computed[-1] == 0 and _differ(after[0], before[0])


def _build_at_once(root, barrier, results):
    """One of two processes that miss the same entry together and both build it."""
    cache = FeatureCache(root)
    barrier.wait(timeout=60)

    def build(path):
        barrier.wait(timeout=60)  # both have missed before either publishes
        np.save(path, np.arange(24, dtype="float32").reshape(6, 4))

    array, hit = cache.get_or_build("samekey", build, {"kind": "test"})
    results.put((np.asarray(array).tolist(), hit))


def test_two_processes_building_one_entry(tmp_path):
    # fork: the children only run numpy and file operations, never TensorFlow.
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_build_at_once, args=(tmp_path / "cache", barrier, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    (first, first_hit), (second, second_hit) = outcomes
    assert first == second == np.arange(24).reshape(6, 4).tolist()
    assert not first_hit and not second_hit  # the race really happened
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["samekey"]


def _differ(a, b) -> bool:
    """More than 1 % apart, relative to the features' own scale (random-init features are tiny)."""
    return float(np.linalg.norm(np.subtract(a, b))) > 0.01 * float(np.linalg.norm(b))


def test_augmented_views_differ(tiny_features, synthetic_dataset, photos, tmp_path):
    files, fp = photos
    config = make_config("dropout20", backbone="mobilenet", weights="none", image_size=64, augment_views=3)
    cache = FeatureCache(tmp_path / "cache")
    views, hit = cached_views(cache, tiny_features.feature_model, config, synthetic_dataset, files, fp)
    clean, _ = cached_features(cache, tiny_features.feature_model, config, synthetic_dataset, files, fp)
    assert not hit and views.shape == (3, len(files), 1024)
    for i in range(3):
        assert _differ(views[i], clean)
        for j in range(i + 1, 3):
            assert _differ(views[i], views[j])
    assert len(cache.entries()) == 2


def test_feature_maps_are_the_pooled_features_before_pooling(
    tiny_features, synthetic_dataset, photos, tmp_path
):
    files, fp = photos
    config = make_config(
        "dropout20", backbone="mobilenet", weights="none", image_size=64, augment_cache="maps"
    )
    cache = FeatureCache(tmp_path / "cache")
    maps, hit = cached_maps(cache, tiny_features.map_model, config, synthetic_dataset, files, fp)
    assert not hit and maps.shape == (len(files), 2, 2, 1024) and maps.dtype == np.float32
    clean, _ = cached_features(cache, tiny_features.feature_model, config, synthetic_dataset, files, fp)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), clean, rtol=1e-5, atol=0)  # the fixture pools by max
    again, hit = cached_maps(cache, tiny_features.map_model, config, synthetic_dataset, files, fp)
    assert hit and np.array_equal(again, maps)
    assert sorted(e["kind"] for e in cache.entries()) == ["clean", "feature maps"]


@needs_mobilenet_weights
@pytest.mark.parametrize("preprocessing", ["imagenet", "rescale"])
def test_a_pairs_features_are_its_members_own_side_by_side(
    preprocessing, synthetic_dataset, photos, tmp_path
):
    """A pair of backbones caches each member's pooled features (clean and augmented views) under
    the member's own key: the same rows as the member's own model computes, side by side as the
    pair's model gives them in one pass, and read back by the member's own runs."""
    files, fp = photos[0][:2], photos[1]
    settings = dict(image_size=64, augment_views=2, preprocessing=preprocessing)
    pair = make_config("best", backbone="lite0_mobilenet", **settings)
    pair_model = build_classifier(pair, 5).feature_model
    cache = FeatureCache(tmp_path / "pair")
    joined, hit = cached_features(cache, pair_model, pair, synthetic_dataset, files, fp)
    views, _ = cached_views(cache, pair_model, pair, synthetic_dataset, files, fp)
    assert not hit and joined.shape == (2, 1280 + 1024) and views.shape == (2, 2, 1280 + 1024)
    extract_clean(pair_model, synthetic_dataset, files, pair, tmp_path / "one_pass.npy")
    # One graph for both members folds and fuses a little differently: float32 round-off.
    np.testing.assert_allclose(joined, np.load(tmp_path / "one_pass.npy"), rtol=1e-4, atol=1e-4)

    own_cache, own = FeatureCache(tmp_path / "own"), []
    for member in BACKBONES["lite0_mobilenet"].members:
        config = make_config("best", backbone=member, **settings)
        model = build_classifier(config, 5).feature_model
        own.append(
            [
                cached(own_cache, model, config, synthetic_dataset, files, fp)[0]
                for cached in (cached_features, cached_views)
            ]
        )
        assert cached_features(cache, model, config, synthetic_dataset, files, fp)[1]  # a hit
    np.testing.assert_allclose(joined, np.concatenate([f for f, _ in own], axis=-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(views, np.concatenate([v for _, v in own], axis=-1), rtol=1e-5, atol=1e-6)
    assert sorted(e["key"] for e in cache.entries()) == sorted(e["key"] for e in own_cache.entries())


def test_a_build_that_fails_leaves_no_staging_folder(tmp_path):
    cache = FeatureCache(tmp_path / "cache")

    def cancelled(path):
        np.save(path, np.zeros(3))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("key", cancelled, {"kind": "test"})
    assert list(cache.root.iterdir()) == [] and cache.load("key") is None


def test_a_full_disk_while_building_is_an_error_naming_the_entry(
    tiny_features, synthetic_dataset, photos, tmp_path, monkeypatch
):
    import errno
    import os

    files, fp = photos
    config = make_config("dropout20", backbone="mobilenet", weights="none", image_size=64)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)  # a sparse memory map would die of SIGBUS instead
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(OSError) as caught:
        cached_maps(cache, tiny_features.map_model, config, synthetic_dataset, files, fp)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.startswith(str(cache.root))
    assert list(cache.root.iterdir()) == []


@pytest.mark.parametrize(
    "preset, changes",
    [
        ("base", {"image_size": 96}),
        ("dropout20", {"augment_cache": "maps", "image_size": 128}),  # 4 x 4 maps, the smallest augmented
    ],
)
@pytest.mark.real_data
@needs_mobilenet_weights
def test_cached_head_matches_end_to_end_accuracy(preset, changes, synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWER_WEIGHTS_DIR", str(WEIGHTS_DIR))
    accuracy = {"cached": [], "end_to_end": []}
    for seed in (0, 1, 2):
        for name, cache in (("cached", True), ("end_to_end", False)):
            config = make_config(
                preset,
                backbone="mobilenet",
                weights="imagenet",
                epochs=3,
                seed=seed,
                cache_features=cache,
                **changes,
            )
            run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs")
            assert Run(run_dir).facts.augment_cache == config.augment_cache
            accuracy[name].append(read_json(run_dir / "metrics.json")["test_accuracy"])
    print(json.dumps(accuracy))
    one_photo = 1 / Run(run_dir).facts.split_sizes["test"]
    noise = max(np.ptp(accuracy["cached"]), np.ptp(accuracy["end_to_end"]), one_photo)
    assert abs(np.mean(accuracy["cached"]) - np.mean(accuracy["end_to_end"])) <= noise, accuracy


MIRRORED_SCRIPT = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from flower_core.config import make_config
from flower_core.training.jobs import train_new_run

data, runs, weights = sys.argv[1:]
keras.applications.MobileNet(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
for preset, size, cache in (("base", 32, False), ("base", 32, True), ("dropout20", 128, True)):
    config = make_config(preset, backbone="mobilenet", weights=weights, image_size=size, epochs=1,
                         dense_units=[8], strategy="mirrored", cache_features=cache)
    print(train_new_run(config, data, runs))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(synthetic_dataset, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MIRRORED_SCRIPT,
            str(synthetic_dataset),
            str(tmp_path / "runs"),
            str(tmp_path / "random.weights.h5"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run_dirs = [Path(line) for line in result.stdout.split()[-3:]]
    # End to end, the head on cached features, the head on augmented cached maps: three runs, as a
    # job worker trains them, in one process (a fresh MirroredStrategy per run used to fail the second).
    for run_dir in run_dirs:
        status = read_status(run_dir)
        assert status.state == "done", status
        assert status.replicas == 2
    assert Run(run_dirs[-1]).facts.augment_cache == "maps"


def test_pixel_scratch_is_removed_after_use_sweeps_dead_processes_and_survives_a_cache_clear(
    tmp_path, monkeypatch
):
    import shutil
    from collections import namedtuple

    from flower_core.models.features import PIXELS_DIR, pixel_scratch

    cache = FeatureCache(tmp_path / "cache")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left_by_a_kill = cache.root / PIXELS_DIR / f"20260101-000000-base-vgg16-aaaa-{dead.pid}"
    left_by_a_kill.mkdir(parents=True)
    (left_by_a_kill / "train.data").write_bytes(b"x" * 100)
    (cache.root / "entry").mkdir()
    (cache.root / "entry" / "features.npy").write_bytes(b"y" * 10)
    with pixel_scratch("run-1", photos=10, image_size=32, root=cache.root) as folder:
        assert folder.is_dir() and folder.parent == cache.root / PIXELS_DIR
        assert not left_by_a_kill.exists()
        (folder / "train.data").write_bytes(b"z" * 1000)
        assert cache.size_bytes() == 10 and cache.clear() == 10
        assert folder.is_dir() and not (cache.root / "entry").exists()
    assert not folder.exists()
    with pixel_scratch("run-2", photos=0, image_size=32, root=cache.root) as folder:
        assert folder is None
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9, 10**6))
    with pixel_scratch("run-3", photos=10, image_size=32, root=cache.root) as folder:
        assert folder is None
