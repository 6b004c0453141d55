"""The `train` command against the study's recipe written plainly in Keras, as whole processes.

The product: `python -m flower_core train --preset base` with MobileNet ImageNet weights on
`--per-class` photos of each class, 20 full epochs (early stopping held off), an empty feature
cache. The recipe: a frozen MobileNet inside the model and the same head (pixels / 255, max
pooling, dense 512 and 128, no dropout: the `base` preset), `model.fit` over the
decoded photos of the same split every epoch, no early stopping (what the study's notebook does).
Both start a new Python process, each after a throwaway import of TensorFlow (`timed`); the
product's time is split from its run log. With `--repeats`, pairs run one after the other and
the median ratio is printed last: the machine's speed drifts by a third between minutes.

    FLOWER_DATA=../shared/data/flowers FLOWER_WEIGHTS_DIR=../shared/weights \\
        python bench/bench_cli_vs_recipe.py [--per-class 100] [--epochs 20] [--image-size 224]
                                            [--repeats 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit, subset_folder

# isort: split
from flower_core.store.runs import RUN_LOG, SPLIT, Run, RunStore

ROOT = Path(__file__).resolve().parents[1]
# The run log's lines that open each stage (`flower_core.training.train`).
MARKS = {
    "training": "training ",
    "building": "building the model",
    "head": "training the head",
    "evaluating": "evaluating",
    "ended": "ended",
}

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


def timed(command: list[str], env: dict) -> tuple[float, float, str]:
    """When `command` started (epoch seconds), its seconds and its output. A throwaway import
    reads TensorFlow's files first (as `hyperfine --warmup` does), for both commands alike: on
    this machine one import otherwise took from 2 to 14.5 s of wall time for about 2.7 s of CPU,
    waiting for the disk."""
    _run([sys.executable, "-c", "import keras, tensorflow"], env)
    started_at, started = time.time(), time.perf_counter()
    output = _run(command, env)
    return started_at, time.perf_counter() - started, output


def _run(command: list[str], env: dict) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{command[:4]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def stage_seconds(run_log: Path, started: float, ended: float) -> dict:
    """Where the product's seconds went, from its run log's time stamps: starting Python and
    importing TensorFlow, checking the photos, building the model (and what else comes before the
    head but the feature passes: compiling, callbacks), computing the train and validation
    features, training the head (with its saves), the test evaluation (its features included),
    and the process's exit."""
    marks, computing = {}, 0.0
    for line in run_log.read_text().splitlines():
        at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - started
        message = line.split(": ", 1)[-1]
        for mark, opening in MARKS.items():
            if message.startswith(opening):
                marks.setdefault(mark, at)
        if message.startswith("computed ") and "evaluating" not in marks:
            computing += float(message.rsplit(" in ", 1)[1].split()[0])
    missing = [MARKS[mark] for mark in MARKS if mark not in marks]
    if missing:
        raise SystemExit(f"{run_log} has no line starting {missing}: did the run log change?")
    head = marks["head"] - marks["building"]
    return {
        "import": round(marks["training"], 2),
        "photos_check": round(marks["building"] - marks["training"], 2),
        "model_build_and_setup": round(head - computing, 2),
        "features": round(computing, 2),
        "head_and_saves": round(marks["evaluating"] - marks["head"], 2),
        "test_evaluation": round(marks["ended"] - marks["evaluating"], 2),
        "exit": round(ended - started - marks["ended"], 2),
    }


def product_run(data: Path, work: Path, args) -> tuple[float, dict, float, Path]:
    """One `train` command on an empty cache: seconds, their split, test accuracy, run folder."""
    env = {**os.environ, "FLOWER_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started, seconds, _ = timed(
        [sys.executable, "-m", "flower_core", "train", "--data", str(data), "--runs", str(work / "runs"),
         "--preset", "base", "--backbone", "mobilenet", "--weights", "imagenet",
         "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--patience", "1000"],
        env,
    )  # fmt: skip
    (run_dir,) = RunStore(work / "runs").run_dirs()
    accuracy = Run.open(run_dir).metrics.test_accuracy
    return seconds, stage_seconds(run_dir / RUN_LOG, started, started + seconds), accuracy, run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=1, help="product-recipe pairs, one after the other")
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as work:
        work = Path(work)
        data = subset_folder(Path(os.environ["FLOWER_DATA"]), args.per_class, work)
        weights = str(Path(os.environ["FLOWER_WEIGHTS_DIR"]) / "mobilenet_1_0_224_tf_no_top.h5")
        for repeat in range(args.repeats):
            product, stages, accuracy, run_dir = product_run(data, work / f"product{repeat}", args)
            _, recipe, out = timed(
                [sys.executable, "-c", RECIPE, str(run_dir / SPLIT), str(data),
                 str(args.image_size), str(args.epochs), weights],
                {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )  # fmt: skip
            ratios.append(recipe / product)
            emit(
                "cli_vs_recipe",
                photos=sum(1 for _ in data.rglob("*.jpg")),
                epochs=args.epochs,
                image_size=args.image_size,
                product_s=round(product, 1),
                recipe_s=round(recipe, 1),
                speed_up=round(recipe / product, 2),
                product_stages_s=stages,
                product_test_accuracy=accuracy,
                recipe_test_accuracy=float(out.split()[-1]),
            )
    if args.repeats > 1:
        emit("cli_vs_recipe_median", repeats=args.repeats, speed_up=round(statistics.median(ratios), 2))


if __name__ == "__main__":
    main()
