"""Every run writes TensorBoard event files, one step per epoch of the whole run."""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from flower_core.store.runs import TENSORBOARD_DIR
from flower_core.training.progress import epoch_events


def event_steps(folder: Path, tag: str = "epoch_loss") -> list[int]:
    """The steps at which the event files in `folder` hold `tag`."""
    return sorted(
        event.step
        for path in folder.glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
        if value.tag == tag
    )


def test_events_count_epochs_over_the_run_s_phases(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 4), dtype="float32")
    y = keras.utils.to_categorical(np.arange(16) % 2, 2)
    # The head's two epochs, then one of fine-tuning: steps 1, 2, 3 as in history.jsonl.
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=epoch_events(tmp_path))
    model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0, callbacks=epoch_events(tmp_path, 2))
    events = tmp_path / TENSORBOARD_DIR
    assert event_steps(events / "train") == [1, 2, 3]
    assert event_steps(events / "validation") == [1, 2, 3]
    assert event_steps(events / "train", "epoch_accuracy") == [1, 2, 3]
