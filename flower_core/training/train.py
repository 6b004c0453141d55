"""Train a run: scan and split the data, fit the head (on cached features when the backbone is
frozen), optionally fine-tune the top blocks, evaluate on the unseen test split.

Every step writes to the run folder, so a run can be followed live from another process, and a
run that fails, is cancelled or is killed always leaves a readable folder.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from flower_core.config import MIN_MAP_POSITIONS, REDUCE_LR_FACTOR
from flower_core.data.dataset import (
    Dataset,
    Split,
    check_split_files,
    fingerprint,
    labels_for,
    load_split,
    scan_dataset,
    split_dataset,
)
from flower_core.data.pipeline import image_dataset
from flower_core.errors import FlowerError
from flower_core.models import sharded
from flower_core.models.classifier import Classifier, build_classifier, set_fine_tuning
from flower_core.models.features import FeatureCache, cached_maps, cached_views, pixel_scratch
from flower_core.models.photo_features import cached_features
from flower_core.store.logs import log_to_file
from flower_core.store.run_files import RunConfig, Status
from flower_core.store.runs import (
    CONFIG,
    FACTS,
    METRICS,
    MODEL,
    RUN_LOG,
    SPLIT,
    Run,
    cancel_requested,
    clear_write_errors,
    group_dir,
    kept_model_note,
    now_iso,
    peek_status,
    read_history,
    request_cancel,
    write_json,
)
from flower_core.training.progress import (
    BestModelKeeper,
    ExtractionProgress,
    Reporter,
    RunProgress,
    StopOnNaN,
    epoch_events,
    update_status,
)
from flower_core.training.stopping import run_stop_reason

# A head step on cached features takes a few milliseconds, not much more than Keras's own work
# around each step, so the head runs this many steps per call (bench/README.md); not under a
# distribution strategy, where TF 2.21 fails such a call ("You must feed a value for placeholder").
HEAD_STEPS_PER_EXECUTION = 16
# Rows of cached features or maps the head validates or predicts on at once.
HEAD_PREDICT_BATCH = 256


log = logging.getLogger(__name__)


class _Cancelled(Exception):
    pass


def run_training(run_dir: Path, *, reporter: Reporter | None = None, node: str | None = None) -> str:
    """Train the queued run in `run_dir`; returns its final state (done, cancelled or failed).
    `node` is the Ray node training it (`cluster_runs`), recorded in its facts.

    Whatever goes wrong in training ends as a `failed` status with a one-line message. Only when
    `status.json` itself cannot be written (disk full) does this raise a one-line `FlowerError`;
    the run then reads as `interrupted` once this process exits.
    """
    run_dir = Path(run_dir)
    with log_to_file(run_dir / RUN_LOG):
        with clear_write_errors():
            update_status(run_dir, state="running", started=now_iso(), message="scanning the dataset")
        log.info("training %s", run_dir)
        previous = (
            signal.signal(signal.SIGTERM, lambda *_: request_cancel(run_dir)) if _main_thread() else None
        )
        try:
            state, message = _outcome(run_dir, reporter, node)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        log.info("ended %s: %s", state, message)
        with clear_write_errors():
            update_status(
                run_dir,
                state=state,
                message=message,
                finished=now_iso(),
                stop_reason=run_stop_reason(run_dir, Status(state=state, message=message)),
            )
    return state


def _outcome(run_dir: Path, reporter, node: str | None) -> tuple[str, str]:
    """Train, and say how it ended: the final state and a one-line message."""
    try:
        with clear_write_errors():
            TrainingRun(run_dir, Run.open(run_dir).config, reporter, node).run()
    except _Cancelled:
        return "cancelled", f"cancelled by request; {kept_model_note(run_dir)}"
    except FlowerError as error:
        log.info("failed: %s", error, exc_info=True)
        return "failed", str(error)
    except Exception as error:  # a bug or a resource problem: keep the run readable and say why
        log.exception("failed on an unexpected error")
        lines = str(error).strip().splitlines()
        return "failed", f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
    return "done", "finished"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class TrainingRun:
    """One training, from a queued run folder to its metrics.

    Holds what every step needs once: the run's folder and stored settings, the reporter, the
    dataset with its fingerprint (which stats every photo, so it is computed once), the split,
    the model and the feature cache.
    """

    def __init__(
        self, run_dir: Path, stored: RunConfig, reporter: Reporter | None = None, node: str | None = None
    ):
        self.run_dir, self.stored, self.reporter, self.node = Path(run_dir), stored, reporter, node
        self.config = stored.settings
        self.cache = FeatureCache()
        self.dataset: Dataset | None = None
        self.split: Split | None = None
        self.fingerprint = ""
        self.clf: Classifier | None = None
        # The estimate made as the run was queued: the whole run's ETA until measured figures replace it.
        self.estimate = peek_status(self.run_dir).estimate
        self.began = time.monotonic()
        self.extraction = ExtractionProgress({})
        self.trained = False

    def run(self) -> None:
        self._prepare_data()
        strategy = distribution_strategy(self.config.strategy)
        update_status(self.run_dir, state="running", replicas=strategy.num_replicas_in_sync)
        with strategy.scope():
            self._train()

    def stage(self, message: str, done: bool = False) -> None:
        """Say what the run is doing: in its log, its `status.json` (with the whole run's ETA
        from its estimate, before anything is measured) and to the reporter."""
        log.info(message)
        update_status(self.run_dir, state="running", message=message, eta=self._eta_before_training())
        if self.reporter:
            self.reporter({"kind": "stage", "message": message, "done": done})

    def _eta_before_training(self) -> float | None:
        """Seconds left in the whole run until its epochs start: the extraction left at the speed
        measured so far plus the estimate's training, else the estimate less the time spent."""
        if self.trained:
            return self.extraction.left_s()
        if self.estimate is None:
            return None
        extraction = self.extraction.left_s() if self.extraction.passes else None
        if extraction is not None:
            return round(extraction + self.estimate.training_s, 1)
        return round(max(self.estimate.seconds - (time.monotonic() - self.began), 0.0), 1)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def total_epochs(self) -> int:
        return self.config.epochs + (self.config.fine_tune_epochs if self.config.fine_tune_blocks else 0)

    def _prepare_data(self) -> None:
        def scanned(done, total):
            if done % 200 == 0 or done == total:
                self.stage(f"checking photos {done}/{total}", done == total)

        if not self.stored.data_root:
            raise FlowerError(f"{CONFIG} names no dataset (data_root): queue the run again")
        self.dataset = scan_dataset(Path(self.stored.data_root), progress=scanned)
        self.fingerprint = fingerprint(self.dataset)
        self.split = self._split()
        write_json(self.run_dir / SPLIT, self.split.to_json())

    def _write_facts(self) -> None:
        """What the run learned about its data and how it will train, once (`runs.Run.facts`):
        `config.json` stays the settings it was queued with."""
        write_json(
            self.run_dir / FACTS,
            {
                "class_names": self.class_names,
                "dataset_fingerprint": self.fingerprint,
                "skipped_files": [list(s) for s in self.dataset.skipped],
                "split_sizes": {k: len(getattr(self.split, k)) for k in ("train", "val", "test")},
                "augment_cache": self.config.augment_cache,
                "host": os.uname().nodename,
                "node": self.node,
            },
        )

    def _split(self) -> Split:
        """The split of an earlier run (`--split`) or of the run's group, else a new stratified,
        seeded one."""
        if self.stored.share_split and not self._shared_split_file().is_file():
            # The first run of a group to train writes the split the group's other runs then read.
            split = split_dataset(
                self.dataset,
                val_fraction=self.config.val_fraction,
                test_fraction=self.config.test_fraction,
                seed=self.config.seed,
            )
            write_json(self._shared_split_file(), split.to_json())
        elif self.stored.split_file:
            path = self.stored.split_file
            split = check_split_files(load_split(path), self.dataset.files, path)
        else:
            split = split_dataset(
                self.dataset,
                val_fraction=self.config.val_fraction,
                test_fraction=self.config.test_fraction,
                seed=self.config.seed,
            )
        if not split.train or not split.val:
            raise FlowerError("dataset too small to split: need photos in both train and validation")
        return split

    def _shared_split_file(self) -> Path:
        """The split file of the run's study or sweep, which the first of its runs writes: only
        its group's own, so a planted `config.json` cannot have a file written anywhere else."""
        expected = group_dir(self.run_dir.parent, self.stored.group or "") / SPLIT
        named = self.stored.split_file
        if named is None or Path(named).resolve() != expected.resolve():
            raise FlowerError(
                f"the run's config.json names the shared split file {named!r}, not its group's "
                f"{expected}; queue the run again from its study or sweep"
            )
        return expected

    def _train(self) -> None:
        self.stage("building the model")
        self.clf = build_classifier(self.config, len(self.class_names))
        self._views_when_maps_are_too_small()
        self._write_facts()
        self.extraction = ExtractionProgress(
            self._planned_passes(), self.estimate.photos_per_s if self.estimate else None
        )
        best = self._fit_head_on_features() if self.config.head_on_cache else self._fit_end_to_end()
        if self.config.fine_tune_blocks:
            self._fine_tune(best)
        self.stage("evaluating on the test split")
        self._write_metrics()

    def _planned_passes(self) -> dict[str, int]:
        """The feature-extraction passes this run may make, in order, with their backbone passes
        (`_cached`'s names); those the cache holds are dropped as they are found."""
        config, split = self.config, self.split
        if not config.head_on_cache:
            return {}
        if config.augments_maps:
            names, train = (
                ("train feature maps", "validation feature maps", "test feature maps"),
                len(split.train),
            )
        elif config.augment:
            names = ("augmented features", "validation features", "test features")
            train = len(split.train) * config.augment_views
        else:
            names, train = ("train features", "validation features", "test features"), len(split.train)
        sizes = (train, len(split.val), len(split.test) if split.test and not config.fine_tune_blocks else 0)
        return {name: size for name, size in zip(names, sizes, strict=True) if size}

    def _callbacks(self, total_epochs, offset, phase, best=np.inf):
        self.trained = True  # the estimate's training seconds give way to the epochs' own ETA
        progress = RunProgress(
            self.run_dir, self.reporter, total_epochs, offset, phase, then_s=self.extraction.left_s
        )
        keeper = BestModelKeeper(self.clf.model, self.run_dir / MODEL, best, epoch_offset=offset)
        callbacks = [
            progress,
            StopOnNaN(),
            keeper,
            keras.callbacks.EarlyStopping("val_loss", patience=self.config.patience),
            *epoch_events(self.run_dir, offset),
        ]
        if self.config.reduce_lr:
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    "val_loss",
                    factor=REDUCE_LR_FACTOR,
                    patience=max(self.config.patience // 2, 1),
                    min_lr=1e-6,
                )
            )
        return callbacks, progress, keeper

    def _labels(self, files: list[str]) -> np.ndarray:
        return labels_for(files, self.class_names)

    def _fit_end_to_end(self) -> float:
        """The whole model on the photos: the no-transfer baseline, or `cache_features` off."""
        config = self.config
        _compile(self.clf.model, config, config.learning_rate)
        phase = "train" if config.trains_from_scratch else "head"
        callbacks, progress, keeper = self._callbacks(self.total_epochs, 0, phase)
        self._fit_on_photos(config.epochs, callbacks)
        _check_cancel(progress)
        return keeper.best

    def _fit_on_photos(self, epochs: int, callbacks) -> None:
        """Train the model end to end on the photos (training and fine-tuning); epochs after the
        first read the decoded photos from a scratch cache (`features.pixel_scratch`) instead of
        decoding them again."""
        split, config = self.split, self.config
        y_train, y_val = self._labels(split.train), self._labels(split.val)
        photos = len(split.train) + len(split.val) if epochs > 1 else 0
        with pixel_scratch(self.run_dir.name, photos, config.image_size) as pixels:
            self.clf.model.fit(
                self._images(split.train, y_train, shuffle=True, pixel_cache=pixels and pixels / "train"),
                epochs=epochs,
                validation_data=self._images(
                    split.val, y_val, shuffle=False, pixel_cache=pixels and pixels / "val"
                ),
                callbacks=callbacks,
                class_weight=_class_weight(config, y_train, len(self.class_names)),
                shuffle=False,
                verbose=0,
            )

    def _images(self, files, labels, *, shuffle, pixel_cache):
        config = self.config
        return image_dataset(
            self.dataset.root,
            files,
            labels,
            image_size=config.image_size,
            batch_size=config.batch_size,
            num_classes=len(self.class_names),
            shuffle=shuffle,
            seed=config.seed,
            pixel_cache=pixel_cache,
        )

    def _fit_head_on_features(self) -> float:
        config, n = self.config, len(self.class_names)
        y_train = _one_hot(self._labels(self.split.train), n)
        y_val = _one_hot(self._labels(self.split.val), n)
        if config.augments_maps:
            head, train, validation = self._map_training_data(y_train, y_val)
        else:
            head, train, validation = self._feature_training_data(y_train, y_val)
        steps = 1 if tf.distribute.has_strategy() else HEAD_STEPS_PER_EXECUTION
        _compile(head, config, config.learning_rate, steps)
        callbacks, progress, keeper = self._callbacks(self.total_epochs, 0, "head")
        log.info("training the head on cached %s", "feature maps" if config.augments_maps else "features")
        head.fit(
            train,
            epochs=config.epochs,
            validation_data=validation,
            batch_size=config.batch_size,
            callbacks=callbacks,
            class_weight=_class_weight(config, y_train.argmax(1), n),
            shuffle=False,
            verbose=0,
        )
        _check_cancel(progress)
        return keeper.best

    def _cached(self, build, model, files: list[str], what: str):
        """`build` (a `features.cached_*` function) over `files`, reporting as `what`; in shards
        on the cluster for a large dataset (`sharded.for_cluster`)."""
        values, _ = sharded.for_cluster(build, len(files))(
            self.cache,
            model,
            self.config,
            self.dataset.root,
            files,
            self.fingerprint,
            self._extraction_reporter(what),
        )
        return values

    def _feature_training_data(self, y_train, y_val):
        """The head on pooled features: clean ones, or one of K cached augmented views per epoch."""
        features = self.clf.feature_model
        if self.config.augment:
            train_x = self._cached(cached_views, features, self.split.train, "augmented features")
        else:
            train_x = np.asarray(self._cached(cached_features, features, self.split.train, "train features"))[
                None
            ]
        val_x = self._cached(cached_features, features, self.split.val, "validation features")
        keras.utils.set_random_seed(self.config.seed)  # the same head training on a cache hit or a miss
        return (
            self.clf.head_model,
            _view_dataset(np.asarray(train_x), y_train, self.config),
            _feature_batches(np.asarray(val_x), y_val),
        )

    def _map_training_data(self, y_train, y_val):
        """The head on cached feature maps, which it augments anew each epoch: one backbone pass
        per photo instead of K (bench/README.md)."""
        maps = self.clf.map_model
        train_maps = self._cached(cached_maps, maps, self.split.train, "train feature maps")
        val_maps = self._cached(cached_maps, maps, self.split.val, "validation feature maps")
        keras.utils.set_random_seed(self.config.seed)
        return (
            self.clf.map_head_model,
            _rows_dataset(train_maps, y_train, self.config, shuffle=True),
            _rows_dataset(val_maps, y_val, self.config, shuffle=False),
        )

    def _extraction_reporter(self, what: str):
        """Progress of a feature-cache build, counted over all the run's passes
        (`ExtractionProgress`), with photos/s (in `status.json` as `extraction` while it lasts)
        and the whole run's ETA; a cancel request stops it between batches. The run's log gets
        one line when it ends."""

        def report(done, total):
            if cancel_requested(self.run_dir):
                raise _Cancelled()
            stats = self.extraction.update(what, done, total)
            update_status(
                self.run_dir,
                state="running",
                message=stats["message"],
                extraction=stats if done < total else None,
                eta=self._eta_before_training(),
            )
            if self.reporter:
                self.reporter({"kind": "stage", **stats, "done": done == total})
            if done == total:
                seconds = self.extraction.passes[what].seconds()
                log.info("computed %s in %.1f s (%d backbone passes)", what, seconds, total)

        return report

    def _fine_tune(self, best: float) -> None:
        """Unfreeze the last blocks once the head has converged, and train end to end with a low LR."""
        config = self.config
        unfrozen = set_fine_tuning(self.clf, config.backbone, config.fine_tune_blocks)
        self.stage(f"fine-tuning {len(unfrozen)} layers of the last {config.fine_tune_blocks} blocks")
        _compile(self.clf.model, config, config.fine_tune_learning_rate)
        head_epochs = len(read_history(self.run_dir))  # early stopping may have ended the head phase early
        callbacks, progress, keeper = self._callbacks(
            head_epochs + config.fine_tune_epochs, head_epochs, "fine-tune", best
        )
        self._fit_on_photos(config.fine_tune_epochs, callbacks)
        if keeper.best_weights is None:  # fine-tuning never beat the head: keep the head's best model
            self.clf.model.load_weights(self.run_dir / MODEL)
        _check_cancel(progress)

    def _write_metrics(self) -> None:
        """Test metrics of the best model, and its low-confidence threshold from the validation
        photos; from cached features when only the head trained."""
        from flower_core.evaluation.calibration import confidence_threshold
        from flower_core.evaluation.evaluate import confidence_on, evaluate_model, summarise

        split, names, config = self.split, self.class_names, self.config
        if not split.test:
            return
        if config.head_on_cache and not config.fine_tune_blocks:
            probabilities = self._cached_probabilities(split.test, "test")
            metrics = summarise(probabilities, self._labels(split.test), names, split.test)
            val_probabilities = self._cached_probabilities(split.val, "validation")
            metrics["confidence"] = confidence_threshold(val_probabilities, self._labels(split.val))
        else:
            metrics = evaluate_model(
                self.clf.model,
                names,
                self.dataset.root,
                split.test,
                batch_size=config.batch_size,
                image_size=config.image_size,
            )
            metrics["confidence"] = confidence_on(
                self.clf.model, names, self.dataset.root, split.val, config.image_size
            )
        write_json(self.run_dir / METRICS, metrics)

    def _cached_probabilities(self, files: list[str], what: str) -> np.ndarray:
        """The head's probabilities on `files` (the test or validation photos), through the same
        cached input it trained on: a maps run reuses the backbone graph it already traced for
        its maps (augmentation is off outside training, so this equals the full model)."""
        clf = self.clf
        if self.config.augments_maps:
            head = clf.map_head_model
            rows = self._cached(cached_maps, clf.map_model, files, f"{what} feature maps")
        else:
            head = clf.head_model
            rows = self._cached(cached_features, clf.feature_model, files, f"{what} features")
        # Called directly, not through `predict`, which traces a function of its own for these few
        # batches (and `predict_on_batch` returned every row twice under MirroredStrategy).
        return np.concatenate(
            [
                keras.ops.convert_to_numpy(head(np.asarray(rows[i : i + HEAD_PREDICT_BATCH]), training=False))
                for i in range(0, len(rows), HEAD_PREDICT_BATCH)
            ]
        )

    def _views_when_maps_are_too_small(self) -> None:
        """Augmented views instead of maps when the backbone's maps are too small to rotate or
        zoom (MobileNet gives 2 x 2 at 64 px); the run's facts say what ran."""
        h, w = self.clf.map_model.output_shape[1:3]
        if not self.config.augments_maps or h * w >= MIN_MAP_POSITIONS:
            return
        self.stage(
            f"feature maps of {h} x {w} are too small to augment: caching "
            f"{self.config.augment_views} augmented views instead"
        )
        self.config = dataclasses.replace(self.config, augment_cache="views")


def _compile(model, config, learning_rate, steps_per_execution=1):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    if not tf.distribute.has_strategy():  # under a strategy, Keras builds them itself
        _build_training_state(model)


def _build_training_state(model) -> None:
    """Make the optimizer's moments and the accuracy's totals now: Keras leaves them to the first
    trace of the train step, and variables made while tracing make `tf.function` trace it all a
    second time (bench/README.md)."""
    model.optimizer.build(model.trainable_variables)
    one_hot = np.eye(model.output_shape[-1], dtype="float32")[:1]
    model.compute_metrics(None, one_hot, one_hot)
    model.reset_metrics()


def _class_weight(config, labels, num_classes):
    if not config.class_weights:
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return {i: len(labels) / (num_classes * max(c, 1)) for i, c in enumerate(counts)}


def _one_hot(labels, n):
    return np.eye(n, dtype="float32")[np.asarray(labels, dtype=int)]


def _check_cancel(progress):
    if progress.cancelled:
        raise _Cancelled()


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


def _view_dataset(views: np.ndarray, labels: np.ndarray, config) -> tf.data.Dataset:
    """Each epoch, each training photo contributes one of its K cached views, drawn at random.

    One view (no augmentation) is shuffled as it is: the draw and a gather per photo are a good
    part of a head epoch (bench/README.md), and the same seeded shuffle gives the same batches."""
    k, n = views.shape[0], views.shape[1]
    if k == 1:
        ds = tf.data.Dataset.from_tensor_slices((views[0], labels))
        ds = ds.shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
        return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
    views_t, labels_t = tf.constant(views), tf.constant(labels)
    index = tf.data.Dataset.range(n)
    draws = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(index, draws).shuffle(n, seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda i, r: (tf.gather_nd(views_t, [r % k, i]), tf.gather(labels_t, i)))
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def _feature_batches(features: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """The validation features as a dataset made once: given as arrays, Keras slices them anew
    every epoch (bench/README.md)."""
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(HEAD_PREDICT_BATCH)


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
        lambda i: tf.numpy_function(read, [i], (tf.float32, tf.float32), stateful=False)
    )
    shaped = batches.map(
        lambda x, y: (
            tf.ensure_shape(x, (None, *rows.shape[1:])),
            tf.ensure_shape(y, (None, labels.shape[1])),
        )
    )
    return shaped.prefetch(tf.data.AUTOTUNE)
