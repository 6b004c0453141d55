"""Compiled forward passes: one graph per loaded model, reused by every prediction and
explanation (whatever the batch size, target class or method), the same numbers as an eager
call, shared by threads, and freed with the model."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from flower_core.config import make_config
from flower_core.evaluation.predict import predict_batch
from flower_core.explain import explain_image, faithfulness
from flower_core.explain.base import _compiled_forward, resolve_layer
from flower_core.models.classifier import build_classifier
from flower_core.models.inference import cached_for_model, forward

from .test_explain import CLASSES, _photo


def _fresh_model():
    """A new model each time, so that trace counts start at zero."""
    config = make_config("dropout20", backbone="mobilenet", weights="none", image_size=32, dense_units=[8])
    return build_classifier(config, len(CLASSES)).model


def _pixels(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, 32, 32, 3)).astype(np.float32)


def test_predictions_of_any_batch_size_use_one_trace_and_match_an_eager_call():
    model = _fresh_model()
    for batch in (1, 6, 16, 1):
        pixels = _pixels(batch, seed=batch)
        compiled = predict_batch(model, pixels)
        eager = np.asarray(model(pixels, training=False))
        np.testing.assert_allclose(compiled, eager, atol=1e-5)
    faithfulness(model, _pixels(1)[0], np.random.default_rng(0).random((32, 32)), 0)
    assert forward(model).experimental_get_tracing_count() == 1


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_the_explanation_graph_is_built_once_per_model_not_per_click(method):
    model = _fresh_model()
    layer = resolve_layer(model)
    first = explain_image(model, _photo(seed=0), method, class_names=CLASSES)
    graph = _compiled_forward(model, layer, with_gradients=True)
    explain_image(model, _photo(seed=1), method, class_names=CLASSES)
    explain_image(model, _photo(seed=2), method, target_class="tulip", class_names=CLASSES)
    assert _compiled_forward(model, layer, with_gradients=True) is graph
    assert graph.experimental_get_tracing_count() == 1
    assert first.target_index == first.predicted_index


def test_score_cam_runs_its_masked_batches_through_the_models_one_graph():
    model = _fresh_model()
    explain_image(model, _photo(), "scorecam", class_names=CLASSES, max_channels=20)
    explain_image(model, _photo(seed=3), "scorecam", class_names=CLASSES, max_channels=5)
    assert forward(model).experimental_get_tracing_count() == 1


def test_threads_asking_at_once_get_the_same_object_built_once():
    model, built, results = _fresh_model(), [], []
    barrier = threading.Barrier(8)

    def build():
        built.append(1)
        return object()

    def ask():
        barrier.wait()
        results.append(cached_for_model(model, "shared", build))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(built) == 1 and len({id(r) for r in results}) == 1


def test_a_dropped_model_is_freed_with_its_graphs():
    """The graphs must not keep their model alive: the app's model cache evicts models."""
    model = _fresh_model()
    predict_batch(model, _pixels(2))
    explain_image(model, _photo(), "gradcam", class_names=CLASSES)
    owner = weakref.ref(model)
    del model
    gc.collect()
    assert owner() is None
