"""Train a run: scan and split the data, fit the head (on cached features when the backbone is
frozen), optionally fine-tune the top blocks, evaluate on the unseen test split.

Every step writes to the run folder, so a run can be followed live from another process, and a
run that fails, is cancelled or is killed always leaves a readable folder.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import traceback
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from flower_core.backbones import ensure_weights
from flower_core.config import TrainConfig
from flower_core.data import (
    Dataset,
    Split,
    fingerprint,
    labels_for,
    list_candidates,
    load_split,
    scan_dataset,
    split_dataset,
)
from flower_core.errors import FlowerError
from flower_core.features import FeatureCache, cached_features, cached_maps, cached_views, pixel_scratch
from flower_core.model import Classifier, build_classifier, set_fine_tuning, trains_from_scratch
from flower_core.pipeline import image_dataset
from flower_core.progress import BestModelKeeper, Reporter, RunProgress, StopOnNaN, update_status
from flower_core.runs import (
    CONFIG,
    METRICS,
    MODEL,
    SPLIT,
    RunStore,
    cancel_requested,
    clear_write_errors,
    kept_model_note,
    now_iso,
    read_history,
    read_json,
    request_cancel,
    write_json,
)

# Feature maps with fewer positions (4 x 4) are too coarse for rotation and zoom to change them.
MIN_MAP_POSITIONS = 16
# A head step on cached features takes a few milliseconds, not much more than Keras's own work
# around each step, so the head runs this many steps per call (bench/README.md); not under a
# distribution strategy, where TF 2.21 fails such a call ("You must feed a value for placeholder").
HEAD_STEPS_PER_EXECUTION = 16


class _Cancelled(Exception):
    pass


def train_new_run(config: TrainConfig, data_root, runs_root=None, *, reporter: Reporter | None = None,
                  split_file=None) -> Path:
    """Create a run folder for `config` and train it in this process; returns the folder."""
    config.validate()
    list_candidates(data_root)
    ensure_weights(config.backbone, config.weights, config.image_size)
    if split_file:
        load_split(split_file)
    run_dir = RunStore(runs_root).create(
        {**config.to_json(), "data_root": str(Path(data_root).resolve()),
         "split_file": str(Path(split_file).resolve()) if split_file else None},
        config.preset, config.backbone)
    run_training(run_dir, reporter=reporter)
    return run_dir


def run_training(run_dir: Path, *, reporter: Reporter | None = None) -> str:
    """Train the queued run in `run_dir`; returns its final state (done, cancelled or failed).

    Whatever goes wrong in training ends as a `failed` status with a one-line message. Only when
    `status.json` itself cannot be written (disk full) does this raise a one-line `FlowerError`;
    the run then reads as `interrupted` once this process exits.
    """
    run_dir = Path(run_dir)
    with clear_write_errors():
        update_status(run_dir, state="running", started=now_iso(), message="scanning the dataset")
    previous = signal.signal(signal.SIGTERM, lambda *_: request_cancel(run_dir)) if _main_thread() else None
    try:
        state, message = _outcome(run_dir, reporter)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    with clear_write_errors():
        update_status(run_dir, state=state, message=message, finished=now_iso())
    return state


def _outcome(run_dir: Path, reporter) -> tuple[str, str]:
    """Train, and say how it ended: the final state and a one-line message."""
    try:
        with clear_write_errors():
            stored = read_json(run_dir / CONFIG)
            _train(run_dir, TrainConfig.from_json(stored), stored, reporter)
    except _Cancelled:
        return "cancelled", f"cancelled by request; {kept_model_note(run_dir)}"
    except FlowerError as error:
        return "failed", str(error)
    except Exception as error:  # a bug or a resource problem: keep the run readable and say why
        _log_traceback(run_dir)
        lines = str(error).strip().splitlines()
        return "failed", f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
    return "done", "finished"


def _log_traceback(run_dir: Path) -> None:
    """Keep the full traceback beside the run for a bug report; best effort on a full disk."""
    try:
        (run_dir / "error.log").write_text(traceback.format_exc())
    except OSError:
        pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _stage(reporter, run_dir, message, done=False):
    update_status(run_dir, state="running", message=message)
    if reporter:
        reporter({"kind": "stage", "message": message, "done": done})


def _prepare_data(run_dir, config, stored, reporter) -> tuple[Dataset, Split]:
    root = Path(stored["data_root"])

    def scanned(done, total):
        if done % 200 == 0 or done == total:
            _stage(reporter, run_dir, f"checking photos {done}/{total}", done == total)

    dataset = scan_dataset(root, progress=scanned)
    if stored.get("split_file"):
        split = load_split(stored["split_file"])
        missing = set(split.train + split.val + split.test) - set(dataset.files)
        if missing:
            raise FlowerError(f"{len(missing)} files of the split are not in the dataset, e.g. {sorted(missing)[0]}")
    else:
        split = split_dataset(dataset, val_fraction=config.val_fraction,
                              test_fraction=config.test_fraction, seed=config.seed)
    if not split.train or not split.val:
        raise FlowerError("dataset too small to split: need photos in both train and validation")
    write_json(run_dir / SPLIT, split.to_json())
    write_json(run_dir / CONFIG, {**stored, "class_names": dataset.class_names,
                                  "dataset_fingerprint": fingerprint(dataset),
                                  "skipped_files": [list(s) for s in dataset.skipped],
                                  "split_sizes": {k: len(getattr(split, k)) for k in ("train", "val", "test")}})
    return dataset, split


def _compile(model, config, learning_rate, steps_per_execution=1):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


def _callbacks(run_dir, config, reporter, save_model, total_epochs, offset, phase, best=np.inf):
    progress = RunProgress(run_dir, reporter, total_epochs, offset, phase)
    keeper = BestModelKeeper(save_model, run_dir / MODEL, best, epoch_offset=offset)
    callbacks = [progress, StopOnNaN(), keeper, keras.callbacks.EarlyStopping("val_loss", patience=config.patience)]
    if config.reduce_lr:
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.2, patience=max(config.patience // 2, 1), min_lr=1e-6))
    return callbacks, progress, keeper


def _class_weight(config, labels, num_classes):
    if not config.class_weights:
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return {i: len(labels) / (num_classes * max(c, 1)) for i, c in enumerate(counts)}


def _one_hot(labels, n):
    return np.eye(n, dtype="float32")[np.asarray(labels, dtype=int)]


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """`mirrored`: synchronous data parallelism over all GPUs, else over all logical CPUs (as in
    tests); `default`: the single-device strategy."""
    if name != "mirrored":
        return tf.distribute.get_strategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return _mirrored(tuple(d.name for d in devices))


@functools.cache
def _mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    """One strategy per process and device list: a second MirroredStrategy starts its collective
    keys again, so the next run in the same process (a job worker) fails with "Shape mismatch in
    the collective instance", even after `keras.backend.clear_session()`."""
    return tf.distribute.MirroredStrategy(list(devices))


def _train(run_dir, config, stored, reporter):
    dataset, split = _prepare_data(run_dir, config, stored, reporter)
    strategy = distribution_strategy(config.strategy)
    update_status(run_dir, state="running", replicas=strategy.num_replicas_in_sync)
    with strategy.scope():
        _train_in_scope(run_dir, config, dataset, split, reporter)


def _train_in_scope(run_dir, config, dataset, split, reporter):
    clf = build_classifier(config, len(dataset.class_names))
    config = _augment_cache_for(run_dir, config, clf, reporter)
    total_epochs = config.epochs + (config.fine_tune_epochs if config.fine_tune_blocks else 0)
    if config.cache_features and not trains_from_scratch(config):
        best = _fit_head_on_features(run_dir, config, dataset, split, clf, reporter, total_epochs)
    else:
        _compile(clf.model, config, config.learning_rate)
        phase = "train" if trains_from_scratch(config) else "head"
        callbacks, progress, keeper = _callbacks(run_dir, config, reporter, clf.model, total_epochs, 0, phase)
        _fit_on_photos(run_dir, clf.model, dataset, split, config, config.epochs, callbacks)
        _check_cancel(progress)
        best = keeper.best
    if config.fine_tune_blocks:
        _fine_tune(run_dir, config, dataset, split, clf, reporter, best)
    _stage(reporter, run_dir, "evaluating on the test split")
    _write_metrics(run_dir, clf, config, dataset, split, reporter)


def _fit_on_photos(run_dir, model, dataset, split, config, epochs, callbacks):
    """Train `model` end to end on the photos (training and fine-tuning); epochs after the first
    read the decoded photos from a scratch cache (`features.pixel_scratch`) instead of decoding
    them again."""
    names = dataset.class_names
    y_train, y_val = labels_for(split.train, names), labels_for(split.val, names)
    photos = len(split.train) + len(split.val) if epochs > 1 else 0
    with pixel_scratch(run_dir.name, photos, config.image_size) as pixels:
        model.fit(_images(dataset, split.train, y_train, config, shuffle=True,
                          pixel_cache=pixels and pixels / "train"),
                  epochs=epochs,
                  validation_data=_images(dataset, split.val, y_val, config, shuffle=False,
                                          pixel_cache=pixels and pixels / "val"),
                  callbacks=callbacks, class_weight=_class_weight(config, y_train, len(names)),
                  shuffle=False, verbose=0)


def _images(dataset, files, labels, config, *, shuffle, pixel_cache):
    return image_dataset(dataset.root, files, labels, image_size=config.image_size,
                         batch_size=config.batch_size, num_classes=len(dataset.class_names),
                         shuffle=shuffle, seed=config.seed, pixel_cache=pixel_cache)


def _check_cancel(progress):
    if progress.cancelled:
        raise _Cancelled()


def _fit_head_on_features(run_dir, config, dataset, split, clf: Classifier, reporter, total_epochs):
    names = dataset.class_names
    y_train = _one_hot(labels_for(split.train, names), len(names))
    y_val = _one_hot(labels_for(split.val, names), len(names))
    if _augments_maps(config):
        head, train, validation = _map_training_data(run_dir, config, dataset, split, clf, reporter, y_train, y_val)
    else:
        head, train, validation = _feature_training_data(run_dir, config, dataset, split, clf, reporter, y_train, y_val)
    steps = 1 if tf.distribute.has_strategy() else HEAD_STEPS_PER_EXECUTION
    _compile(head, config, config.learning_rate, steps)
    callbacks, progress, keeper = _callbacks(run_dir, config, reporter, clf.model, total_epochs, 0, "head")
    head.fit(train, epochs=config.epochs, validation_data=validation, batch_size=config.batch_size,
             callbacks=callbacks, class_weight=_class_weight(config, y_train.argmax(1), len(names)),
             shuffle=False, verbose=0)
    _check_cancel(progress)
    return keeper.best


def _feature_training_data(run_dir, config, dataset, split, clf, reporter, y_train, y_val):
    """The head on pooled features: clean ones, or one of K cached augmented views per epoch."""
    cache, fp = FeatureCache(), fingerprint(dataset)
    if config.augment:
        train_x, _ = cached_views(cache, clf.feature_model, config, dataset.root, split.train, fp,
                                  _extraction_reporter(run_dir, reporter, "augmented features"))
    else:
        clean, _ = cached_features(cache, clf.feature_model, config, dataset.root, split.train, fp,
                                   _extraction_reporter(run_dir, reporter, "train features"))
        train_x = np.asarray(clean)[None]
    val_x, _ = cached_features(cache, clf.feature_model, config, dataset.root, split.val, fp,
                               _extraction_reporter(run_dir, reporter, "validation features"))
    keras.utils.set_random_seed(config.seed)  # the same head training on a cache hit or a miss
    return clf.head_model, _view_dataset(np.asarray(train_x), y_train, config), (np.asarray(val_x), y_val)


def _map_training_data(run_dir, config, dataset, split, clf, reporter, y_train, y_val):
    """The head on cached feature maps, which it augments anew each epoch: one backbone pass per
    photo instead of K (bench/README.md)."""
    cache, fp = FeatureCache(), fingerprint(dataset)
    train_maps, _ = cached_maps(cache, clf.map_model, config, dataset.root, split.train, fp,
                                _extraction_reporter(run_dir, reporter, "train feature maps"))
    val_maps, _ = cached_maps(cache, clf.map_model, config, dataset.root, split.val, fp,
                              _extraction_reporter(run_dir, reporter, "validation feature maps"))
    keras.utils.set_random_seed(config.seed)
    return (clf.map_head_model, _rows_dataset(train_maps, y_train, config, shuffle=True),
            _rows_dataset(val_maps, y_val, config, shuffle=False))


def _extraction_reporter(run_dir, reporter, what):
    """Progress of a feature-cache build; a cancel request stops it between batches."""
    def report(done, total):
        if cancel_requested(run_dir):
            raise _Cancelled()
        _stage(reporter, run_dir, f"computing {what} {done}/{total}", done == total)
    return report


def _view_dataset(views: np.ndarray, labels: np.ndarray, config) -> tf.data.Dataset:
    """Each epoch, each training photo contributes one of its K cached views, drawn at random."""
    k, n = views.shape[0], views.shape[1]
    views_t, labels_t = tf.constant(views), tf.constant(labels)
    index = tf.data.Dataset.range(n)
    draws = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(index, draws).shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda i, r: (tf.gather_nd(views_t, [r % k, i]), tf.gather(labels_t, i)))
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def _rows_dataset(rows: np.ndarray, labels: np.ndarray, config, *, shuffle: bool) -> tf.data.Dataset:
    """Batches of a memory-mapped array, read from disk as they are needed: the feature maps of
    a large dataset need not fit in memory."""
    def read(batch_index):
        order = np.sort(batch_index)  # ascending rows read the file forwards
        return np.asarray(rows[order], dtype="float32"), labels[order]

    index = tf.data.Dataset.range(len(labels))
    if shuffle:
        index = index.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
    batches = index.batch(config.batch_size).map(
        lambda i: tf.numpy_function(read, [i], (tf.float32, tf.float32), stateful=False))
    shaped = batches.map(lambda x, y: (tf.ensure_shape(x, (None, *rows.shape[1:])),
                                       tf.ensure_shape(y, (None, labels.shape[1]))))
    return shaped.prefetch(tf.data.AUTOTUNE)


def _fine_tune(run_dir, config, dataset, split, clf: Classifier, reporter, best):
    """Unfreeze the last blocks once the head has converged, and train end to end with a low LR."""
    unfrozen = set_fine_tuning(clf, config.backbone, config.fine_tune_blocks)
    _stage(reporter, run_dir, f"fine-tuning {len(unfrozen)} layers of the last {config.fine_tune_blocks} blocks")
    _compile(clf.model, config, config.fine_tune_learning_rate)
    head_epochs = len(read_history(run_dir))  # early stopping may have ended the head phase early
    callbacks, progress, keeper = _callbacks(run_dir, config, reporter, clf.model,
                                             head_epochs + config.fine_tune_epochs, head_epochs, "fine-tune", best)
    _fit_on_photos(run_dir, clf.model, dataset, split, config, config.fine_tune_epochs, callbacks)
    if keeper.best_weights is None:  # fine-tuning never beat the head: keep the head's best model
        clf.model.load_weights(run_dir / MODEL)
    _check_cancel(progress)


def _write_metrics(run_dir, clf: Classifier, config, dataset, split, reporter):
    """Test metrics of the best model; from cached test features when only the head trained."""
    from flower_core.evaluate import evaluate_model, summarise

    if not split.test:
        return
    names = dataset.class_names
    if config.cache_features and not trains_from_scratch(config) and not config.fine_tune_blocks:
        probabilities = _cached_test_probabilities(run_dir, clf, config, dataset, split, reporter)
        metrics = summarise(probabilities, labels_for(split.test, names), names, split.test)
    else:
        metrics = evaluate_model(clf.model, names, dataset.root, split.test,
                                 batch_size=config.batch_size, image_size=config.image_size)
    write_json(run_dir / METRICS, metrics)


def _cached_test_probabilities(run_dir, clf: Classifier, config, dataset, split, reporter) -> np.ndarray:
    """The head's probabilities on the test photos, through the same cached input it trained on:
    a maps run reuses the backbone graph it already traced for its maps (augmentation is off
    outside training, so this equals the full model)."""
    cache, fp = FeatureCache(), fingerprint(dataset)
    if _augments_maps(config):
        maps, _ = cached_maps(cache, clf.map_model, config, dataset.root, split.test, fp,
                              _extraction_reporter(run_dir, reporter, "test feature maps"))
        # `predict`, not `predict_on_batch`: under MirroredStrategy the latter returned every row twice.
        return np.concatenate([clf.map_head_model.predict(np.asarray(maps[i:i + 256]), batch_size=256, verbose=0)
                               for i in range(0, len(maps), 256)])
    features, _ = cached_features(cache, clf.feature_model, config, dataset.root, split.test, fp,
                                  _extraction_reporter(run_dir, reporter, "test features"))
    return clf.head_model.predict(np.asarray(features), batch_size=256, verbose=0)


def _augment_cache_for(run_dir, config, clf: Classifier, reporter) -> TrainConfig:
    """`config`, with augmented views instead of maps when the backbone's maps are too small to
    rotate or zoom (MobileNet gives 2 x 2 at 64 px); the run's `config.json` says what ran."""
    h, w = clf.map_model.output_shape[1:3]
    if not _augments_maps(config) or h * w >= MIN_MAP_POSITIONS:
        return config
    _stage(reporter, run_dir, f"feature maps of {h} x {w} are too small to augment: caching "
                              f"{config.augment_views} augmented views instead")
    write_json(run_dir / CONFIG, {**read_json(run_dir / CONFIG), "augment_cache": "views"})
    return dataclasses.replace(config, augment_cache="views")


def _augments_maps(config) -> bool:
    """Whether the head trains on augmented cached feature maps (`augment_cache="maps"`)."""
    cached = config.cache_features and not trains_from_scratch(config)
    return cached and config.augment and config.augment_cache == "maps"
