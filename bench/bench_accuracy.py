"""Accuracy on the test split and on photos from another collection, one JSON line per figure.

A recipe chosen on the split alone can fit the split's collection (docs/RESULTS.md, "Photos
from another collection"), so every figure here comes with the accuracy on an out-of-collection
folder, `FLOWER_OOC_DATA` (`<root>/<class>/<photo>`, any of the run's classes).

    # finished runs: their test accuracy, and the folder's (`evaluate --data`)
    FLOWER_OOC_DATA=/work/ooc/flowers python bench/bench_accuracy.py runs RUN_DIR [RUN_DIR ...]
    # cheap head recipes on the feature cache that the runs filled (same split, same keys):
    # each backbone alone and all concatenated; the recipe's head, the same on L2-normalised
    # features, and an L2-regularised logistic head; each also with horizontal-flip TTA
    FLOWER_DATA=/work/shared/data/flowers FLOWER_OOC_DATA=/work/ooc/flowers \\
      python bench/bench_accuracy.py heads --split SPLIT.json --seeds 0 1 2 \\
      --backbones efficientnet_lite0:384 mobilenet:384
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Stopwatch, emit  # noqa: E402
from flower_core.config import REDUCE_LR_FACTOR, make_config  # noqa: E402
from flower_core.data.dataset import fingerprint, labels_for, load_split, scan_dataset  # noqa: E402
from flower_core.data.images import load_image  # noqa: E402
from flower_core.evaluation.evaluate import evaluate_run, folder_files  # noqa: E402
from flower_core.models.classifier import build_classifier, head_layers  # noqa: E402
from flower_core.models.features import FeatureCache
from flower_core.models.photo_features import cached_features  # noqa: E402
from flower_core.store.runs import Run  # noqa: E402

LOGISTIC_L2 = 1e-4
# (head, features L2-normalised): `best`'s head as it is first.
HEADS = (("recipe", False), ("recipe", True), ("logistic", True))


def score_runs(run_dirs: list[str], ooc: Path) -> None:
    for run_dir in run_dirs:
        run = Run.open(run_dir)
        settings = run.config.settings
        folder = evaluate_run(run_dir, ooc)
        emit(
            "accuracy_run",
            run=run.id,
            backbone=settings.backbone,
            image_size=settings.image_size,
            seed=settings.seed,
            test_accuracy=run.metrics.test_accuracy,
            ooc_accuracy=round(folder["test_accuracy"], 4),
            ooc_photos=folder["num_files"],
            ooc_recall={name: row["recall"] for name, row in folder["per_class"].items()},
            ooc_confusion=folder["confusion"],
            train_seconds=round(run.train_seconds, 1),
        )


def flipped_copy(root: Path, files: list[str], out: Path) -> Path:
    """Mirror images of `files` under `out` (JPEG quality 95), made once."""
    for rel in files:
        target = out / rel
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            load_image(root / rel).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target, quality=95)
    return out


def pooled(spec: str, parts: dict, classes: int) -> dict[str, np.ndarray]:
    """`best`'s pooled features of each part's files for `backbone:size`, through the runs'
    feature cache (the same keys as `train`'s, so what the runs computed is read back)."""
    backbone, size = spec.split(":")
    config = make_config("best", backbone=backbone, image_size=int(size), weights="imagenet")
    model = build_classifier(config, classes).feature_model
    cache, features = FeatureCache(), {}
    for part, (root, files) in parts.items():
        values, _ = cached_features(cache, model, config, root, files, fingerprint(scan_dataset(root)))
        features[part] = np.asarray(values, dtype="float32")
    return features


def fit_head(kind: str, x: dict, y: dict, classes: int, seed: int):
    """`best`'s head (`recipe`) or an L2-regularised softmax (`logistic`), trained as `train`
    trains a head: Adam, label smoothing, early stopping and ReduceLROnPlateau on val_loss."""
    import keras

    config = make_config("best", seed=seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x["train"].shape[1],))
    if kind == "logistic":
        regulariser = keras.regularizers.L2(LOGISTIC_L2)
        outputs = keras.layers.Dense(classes, activation="softmax", kernel_regularizer=regulariser)(inputs)
    else:
        outputs = inputs
        for layer in head_layers(config, classes):
            outputs = layer(outputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(config.learning_rate),
        keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
    )
    patience = config.patience
    model.fit(
        x["train"],
        np.eye(classes)[y["train"]],
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x["val"], np.eye(classes)[y["val"]]),
        callbacks=[
            keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(
                "val_loss", factor=REDUCE_LR_FACTOR, patience=max(patience // 2, 1), min_lr=1e-6
            ),
        ],
        verbose=0,
    )
    return model


def score_heads(args, data: Path, ooc: Path) -> None:
    dataset, split = scan_dataset(data), load_split(args.split)
    names = dataset.class_names
    ooc_files, _ = folder_files(ooc, names)
    parts = {"train": (data, split.train), "val": (data, split.val), "test": (data, split.test)}
    parts["ooc"] = (ooc, ooc_files)
    flips = Path(args.flips)
    parts["test_flip"] = (flipped_copy(data, split.test, flips / "test"), split.test)
    parts["ooc_flip"] = (flipped_copy(ooc, ooc_files, flips / "ooc"), ooc_files)
    y = {part: np.array(labels_for(files, names)) for part, (_, files) in parts.items()}
    features = {spec: pooled(spec, parts, len(names)) for spec in args.backbones}
    sets = {} if args.combined_only else {spec: [spec] for spec in args.backbones}
    if len(args.backbones) > 1:
        sets["+".join(args.backbones)] = list(args.backbones)
    for name, members in sets.items():
        for head, normalise in HEADS[: 1 if args.recipe_only else None]:
            scale = _unit if normalise else np.asarray
            x = {part: np.concatenate([scale(features[m][part]) for m in members], 1) for part in parts}
            for seed in args.seeds:
                with Stopwatch() as watch:
                    model = fit_head(head, x, y, len(names), seed)
                scores = {}
                for part in ("test", "ooc"):
                    plain = model.predict(x[part], verbose=0)
                    both = (plain + model.predict(x[f"{part}_flip"], verbose=0)) / 2
                    scores[f"{part}_accuracy"] = _accuracy(plain, y[part])
                    scores[f"{part}_accuracy_flip_tta"] = _accuracy(both, y[part])
                emit(
                    "accuracy_head",
                    features=name,
                    head=head,
                    l2_normalised=normalise,
                    seed=seed,
                    **scores,
                    fit_seconds=round(watch.seconds, 1),
                )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return round(float(np.mean(probabilities.argmax(1) == labels)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    runs = sub.add_parser("runs", help="finished runs: test split and the out-of-collection folder")
    runs.add_argument("run_dirs", nargs="+")
    heads = sub.add_parser("heads", help="head recipes on cached features of the shared split")
    heads.add_argument("--split", required=True, help="the runs' shared split.json")
    heads.add_argument("--backbones", nargs="+", required=True, help="backbone:size, e.g. mobilenet:384")
    heads.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    heads.add_argument("--flips", default="flipped", help="where the mirror images are written")
    heads.add_argument("--combined-only", action="store_true", help="only all backbones concatenated")
    heads.add_argument("--recipe-only", action="store_true", help="only best's head on the raw features")
    args = parser.parse_args()
    ooc = Path(os.environ["FLOWER_OOC_DATA"])
    if args.mode == "runs":
        score_runs(args.run_dirs, ooc)
    else:
        score_heads(args, Path(os.environ["FLOWER_DATA"]), ooc)


if __name__ == "__main__":
    main()
