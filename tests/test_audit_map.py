"""The review queue's heatmap (`flower_core.explain.audit_map`): Grad-CAM of the audit's own head,
on a known answer (feature maps built by hand) and from an audit's arrays."""

from types import SimpleNamespace

import numpy as np
import pytest

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.explain.audit_map import AuditHead, audit_cam


def maps_with_two_corners() -> np.ndarray:
    """Channel 0 lit in the top-left quarter, channel 1 in the bottom-right one."""
    maps = np.zeros((8, 8, 2), np.float32)
    maps[:4, :4, 0] = 1.0
    maps[4:, 4:, 1] = 1.0
    return maps + 0.01


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_the_map_lights_the_evidence_for_the_class_asked(pooling):
    weights = np.array([[2.0, -1.0], [-1.0, 2.0]], np.float32)  # channel k is evidence for class k
    head = AuditHead(weights, ("daisy", "rose"), pooling, 96)
    for target, corner in ((0, (slice(0, 4), slice(0, 4))), (1, (slice(4, 8), slice(4, 8)))):
        cam = audit_cam(maps_with_two_corners(), head, target)
        assert cam.shape == (8, 8) and cam.dtype == np.float32
        assert cam.max() == 1.0 and cam[corner].min() > 0.9
        other = np.ones((8, 8), bool)
        other[corner] = False
        assert cam[other].max() < 0.1, (target, cam)
    with pytest.raises(FlowerError, match="Received: 'tulip'"):
        head.index("tulip")


def fake_audit(num_classes: int) -> SimpleNamespace:
    """An audit's arrays: four photos per class, each class lighting its own feature."""
    labels = np.repeat(np.arange(num_classes), 4)
    rng = np.random.default_rng(0)
    features = np.eye(num_classes + 2)[labels] * 5 + rng.random((len(labels), num_classes + 2))
    probabilities = np.eye(num_classes)[labels] * 0.9 + 0.1 / num_classes
    names = ["daisy", "rose", "tulip"][:num_classes]
    dataset = SimpleNamespace(labels=list(labels), class_names=names)
    config = make_config("best", image_size=96)
    return SimpleNamespace(dataset=dataset, features=features, probabilities=probabilities, config=config)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_head_weighs_each_class_own_feature(num_classes):
    head = AuditHead.fit(fake_audit(num_classes))
    assert head.weights.shape == (num_classes + 2, num_classes)
    assert head.class_names == ("daisy", "rose", "tulip")[:num_classes]
    assert head.pooling == "avg" and head.image_size == 96
    assert list(head.weights[:num_classes].argmax(axis=1)) == list(range(num_classes))
