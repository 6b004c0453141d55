"""The augmentation preview: versions drawn through training's own layers, and the maps note."""

import numpy as np
import pytest
from PIL import Image

from flower_core.data.augment_preview import augmented_versions, maps_note


@pytest.fixture
def photo(tmp_path):
    y, x = np.mgrid[0:96, 0:128]
    pixels = np.stack([x * 2, y * 2, (x + y) % 256], -1).astype("uint8")  # no symmetry to hide a flip
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_versions_differ_from_the_photo_and_from_each_other(photo):
    original, versions = augmented_versions(photo, 64, seed=3)
    assert original.shape == (64, 64, 3) and versions.shape == (8, 64, 64, 3)
    assert versions.dtype == np.uint8
    assert all(np.abs(v.astype(int) - original).mean() > 1 for v in versions)
    assert len({v.tobytes() for v in versions}) == 8


def test_the_same_seed_draws_the_same_versions(photo):
    assert np.array_equal(
        augmented_versions(photo, 48, seed=5, count=2)[1], augmented_versions(photo, 48, seed=5, count=2)[1]
    )


def test_bad_count_says_what_was_received(photo):
    with pytest.raises(ValueError, match="Received: count=0"):
        augmented_versions(photo, 48, seed=0, count=0)


def test_maps_note_gives_the_grid_of_the_image_size():
    assert "7 x 7 cells at 224 px" in maps_note(224, "mobilenet") and "no flip" in maps_note(224, "mobilenet")
