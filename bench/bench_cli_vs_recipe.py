"""The `train` command against the study's recipe written plainly in Keras, as whole processes.

The product: `python -m flower_core train --preset base` with MobileNet ImageNet weights on
`--per-class` photos of each class, 20 full epochs (early stopping held off), an empty feature
cache. The recipe: a frozen MobileNet inside the model and the same head (pixels / 255, max
pooling, dense 512 and 128, no dropout: the `base` preset), `model.fit` over the
decoded photos of the same split every epoch, no early stopping (what the study's notebook does).
Both start a new Python process; the product's time is split from its run log.

    FLOWER_DATA=../shared/data/flowers FLOWER_WEIGHTS_DIR=../shared/weights \\
        python bench/bench_cli_vs_recipe.py [--per-class 100] [--epochs 20] [--image-size 224]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit, subset_folder

# isort: split
from flower_core.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """
import json, sys, time
import keras, tensorflow as tf
from keras import layers
split, root, weights = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[5]
size, epochs = int(sys.argv[3]), int(sys.argv[4])
classes = sorted({f.split("/")[0] for f in split["train"]})
def data(files, shuffle):
    labels = [classes.index(f.split("/")[0]) for f in files]
    def load(path, label):
        image = tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(path), channels=3), (size, size))
        return image, tf.one_hot(label, len(classes))
    ds = tf.data.Dataset.from_tensor_slices(([root + "/" + f for f in files], labels))
    if shuffle:
        ds = ds.shuffle(len(files), seed=0)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(tf.data.AUTOTUNE)
base = keras.applications.MobileNet(include_top=False, weights=weights, input_shape=(size, size, 3))
base.trainable = False
inputs = keras.Input((size, size, 3))
x = base(layers.Rescaling(1 / 255)(inputs), training=False)
x = layers.GlobalMaxPooling2D()(x)
x = layers.Dense(512, activation="relu")(x)
x = layers.Dense(128, activation="relu")(x)
outputs = layers.Dense(len(classes), activation="softmax")(x)
model = keras.Model(inputs, outputs)
model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
model.fit(data(split["train"], True), validation_data=data(split["val"], False), epochs=epochs, verbose=0)
print("test", model.evaluate(data(split["test"], False), verbose=0)[1])
"""


def timed(command: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{command[:4]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - started, done.stdout


def stage_seconds(run_log: Path, started: float) -> dict:
    """Seconds from the process's start to each stage of the run, from its log: the run begins
    (imports done), features start, the last feature batch (the head trains after it), the test
    evaluation, the end."""
    marks = {}
    for line in run_log.read_text().splitlines():
        seconds = round(dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - started, 2)
        message = line.split(": ", 1)[-1]
        if message.startswith("training "):
            marks["run_started"] = seconds
        elif message.startswith("computing") and "evaluating" not in marks:
            marks.setdefault("features_started", seconds)
            marks["features_done"] = seconds
        elif message.startswith("evaluating"):
            marks["evaluating"] = seconds
        elif message.startswith("ended"):
            marks["ended"] = seconds
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as work:
        work = Path(work)
        data = subset_folder(Path(os.environ["FLOWER_DATA"]), args.per_class, work)
        env = {**os.environ, "FLOWER_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        started = time.time()
        product, _ = timed(
            [sys.executable, "-m", "flower_core", "train", "--data", str(data), "--runs", str(work / "runs"),
             "--preset", "base", "--backbone", "mobilenet", "--weights", "imagenet",
             "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--patience", "1000"],
            env,
        )  # fmt: skip
        (run_dir,) = RunStore(work / "runs").run_dirs()
        stages = stage_seconds(run_dir / "run.log", started)
        weights = str(Path(os.environ["FLOWER_WEIGHTS_DIR"]) / "mobilenet_1_0_224_tf_no_top.h5")
        recipe, out = timed(
            [sys.executable, "-c", RECIPE, str(run_dir / "split.json"), str(data),
             str(args.image_size), str(args.epochs), weights],
            env,
        )  # fmt: skip
        emit(
            "cli_vs_recipe",
            photos=sum(1 for _ in data.rglob("*.jpg")),
            epochs=args.epochs,
            image_size=args.image_size,
            product_s=round(product, 1),
            recipe_s=round(recipe, 1),
            speed_up=round(recipe / product, 2),
            product_stages_s=stages,
            recipe_test_accuracy=float(out.split()[-1]),
        )


if __name__ == "__main__":
    main()
