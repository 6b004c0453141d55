"""Dataset discovery, validation, stratified seeded splits and fingerprints."""

import os

import numpy as np
import pytest
from PIL import Image

from flower_core.data.dataset import find_datasets, fingerprint, labels_for, scan_dataset, split_dataset
from flower_core.errors import FlowerError


def _photo(path, colour=(200, 30, 30), size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def small_dataset(tmp_path):
    root = tmp_path / "flowers"
    for name, count in {"tulip": 10, "daisy": 20, "rose": 30}.items():
        for i in range(count):
            _photo(root / name / f"{i:03d}.jpg")
    (root / "daisy" / ".hidden.jpg").write_bytes(b"junk")
    (root / "daisy" / "notes.txt").write_text("not a photo")
    (root / "rose" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "rose" / "empty.png").write_bytes(b"")
    (root / ".git").mkdir()
    return root


def test_scan_finds_classes_sorted_and_reports_unreadable_files(small_dataset):
    dataset = scan_dataset(small_dataset)
    assert dataset.class_names == ["daisy", "rose", "tulip"]
    assert dataset.counts() == {"daisy": 20, "rose": 30, "tulip": 10}
    skipped = dict(dataset.skipped)
    assert set(skipped) == {"rose/broken.jpg", "rose/empty.png"}
    assert "empty" in skipped["rose/empty.png"]
    assert not any("notes.txt" in f or ".hidden" in f for f in dataset.files)


def test_scan_reports_progress(small_dataset):
    seen = []
    scan_dataset(small_dataset, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (62, 62)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"daisy": 3}, "at least two class folders"),
        ({"daisy": 3, "rose": 0}, "no readable images: rose"),
    ],
)
def test_scan_rejects_bad_layouts(tmp_path, layout, message):
    for name, count in layout.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            _photo(tmp_path / name / f"{i}.png")
    with pytest.raises(FlowerError, match=message):
        scan_dataset(tmp_path)


def test_scan_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FlowerError, match="dataset folder not found"):
        scan_dataset(tmp_path / "nowhere")


def test_a_second_scan_decodes_only_the_photos_changed_since(small_dataset, monkeypatch):
    """The app's worker scans the same folder before every run: photos it already checked, with
    the same size, modification time and inode, are not decoded again; a changed one is."""
    import flower_core.data.dataset as data

    first = scan_dataset(small_dataset)
    decoded = []
    real_load = data.load_image
    monkeypatch.setattr(data, "load_image", lambda path, **kw: decoded.append(path) or real_load(path, **kw))
    again = scan_dataset(small_dataset)
    assert decoded == [] and again == first
    broken = small_dataset / "tulip" / "003.jpg"
    broken.write_bytes(broken.read_bytes()[:40])
    replaced = small_dataset / "daisy" / "005.jpg"
    _photo(replaced.with_suffix(".tmp.png"), colour=(9, 9, 9))
    os.replace(replaced.with_suffix(".tmp.png"), replaced)
    third = scan_dataset(small_dataset)
    assert sorted(decoded) == sorted([broken, replaced])
    assert "tulip/003.jpg" in dict(third.skipped) and "daisy/005.jpg" in third.files


def test_split_is_stratified_disjoint_and_complete(small_dataset):
    dataset = scan_dataset(small_dataset)
    split = split_dataset(dataset, val_fraction=0.2, test_fraction=0.1, seed=3)
    everything = split.train + split.val + split.test
    assert sorted(everything) == sorted(dataset.files)
    assert len(set(everything)) == len(everything)
    for name, count in dataset.counts().items():
        in_val = sum(f.startswith(name + "/") for f in split.val)
        in_test = sum(f.startswith(name + "/") for f in split.test)
        assert in_val == round(count * 0.2) and in_test == round(count * 0.1)


def test_split_depends_on_seed_only(small_dataset):
    dataset = scan_dataset(small_dataset)
    first = split_dataset(dataset, seed=1)
    shuffled = type(dataset)(dataset.root, dataset.class_names, dataset.files[::-1], dataset.labels[::-1])
    assert split_dataset(shuffled, seed=1) == first
    assert split_dataset(dataset, seed=2).test != first.test


@pytest.mark.parametrize("val, test", [(0.6, 0.5), (-0.1, 0.1), (0.1, 1.0)])
def test_split_rejects_bad_fractions(small_dataset, val, test):
    with pytest.raises(FlowerError, match="Received"):
        split_dataset(scan_dataset(small_dataset), val_fraction=val, test_fraction=test)


def test_fingerprint_changes_when_a_photo_changes(small_dataset):
    before = fingerprint(scan_dataset(small_dataset))
    assert fingerprint(scan_dataset(small_dataset)) == before
    target = small_dataset / "daisy" / "000.jpg"
    _photo(target, colour=(1, 2, 3), size=(41, 30))
    os.utime(target, ns=(1, 1))
    assert fingerprint(scan_dataset(small_dataset)) != before


def test_labels_follow_class_names_and_reject_unknown_classes():
    assert labels_for(["rose/a.jpg", "daisy/b.jpg"], ["daisy", "rose"]) == [1, 0]
    with pytest.raises(FlowerError, match="not one of the model's classes"):
        labels_for(["lily/a.jpg"], ["daisy", "rose"])


def test_pixels_are_identical_through_pipeline_and_direct_loading(small_dataset):
    from flower_core.data.images import model_input
    from flower_core.data.pipeline import image_dataset

    files = ["daisy/000.jpg", "rose/001.jpg"]
    batch = next(iter(image_dataset(small_dataset, files, [0, 1], image_size=32, batch_size=2)))
    direct = np.stack([model_input(small_dataset / f, 32) for f in files]).astype("float32")
    np.testing.assert_array_equal(batch[0].numpy(), direct)
    np.testing.assert_array_equal(batch[1].numpy(), [[1, 0], [0, 1]])


def test_the_photo_pipeline_runs_without_tf_data_s_autotuning_thread(small_dataset):
    """That thread makes each pass's end wait, for seconds at times (`flower_core.data.pipeline`)."""
    from flower_core.data.pipeline import image_dataset

    for labels in ([0], None):
        ds = image_dataset(small_dataset, ["daisy/000.jpg"], labels, image_size=32, batch_size=1)
        assert ds.options().autotune.enabled is False
        assert next(iter(ds)) is not None


def test_a_pixel_cache_serves_later_epochs_the_same_photos_without_decoding(tmp_path):
    from flower_core.data.pipeline import image_dataset

    files = [f"{name}/{i}.png" for name in ("daisy", "rose") for i in range(6)]
    for n, rel in enumerate(files):  # each photo its own colour, so each is recognisable
        _photo(tmp_path / "flowers" / rel, colour=(20 * n, 255 - 20 * n, 7 * n), size=(24, 24))
    labels = [int(rel.startswith("rose")) for rel in files]
    ds = image_dataset(
        tmp_path / "flowers",
        files,
        labels,
        image_size=24,
        batch_size=5,
        shuffle=True,
        seed=3,
        pixel_cache=tmp_path / "pixels",
    )

    def epoch() -> list[tuple[str, int]]:
        """(file, label) in the order the epoch served them, each file found by its colour."""
        served = []
        for x, y in ds:
            for pixels, one_hot in zip(x.numpy(), y.numpy()):
                n = int(round(pixels[0, 0, 0] / 20))
                assert np.all(pixels == pixels[0, 0]), "a photo's pixels were mixed up"
                served.append((files[n], int(np.argmax(one_hot))))
        return served

    next(iter(ds))  # a pass cut short (Keras peeks at one batch) must not spoil the cache
    first = epoch()
    for rel in files:  # later epochs must not need the photos any more
        (tmp_path / "flowers" / rel).unlink()
    second = epoch()
    for served in (first, second):
        assert sorted(served) == sorted(zip(files, labels))
    assert first != second, "the order should be reshuffled each epoch"


def test_find_datasets_offers_only_folders_with_photos_in_two_class_folders(tmp_path):
    home = tmp_path / "data"
    _photo(home / "flowers" / "daisy" / "a.jpg")
    _photo(home / "flowers" / "rose" / "nested" / "b.png")
    _photo(home / "one_class" / "daisy" / "a.jpg")
    (home / "one_class" / "rose").mkdir()
    (home / "project" / "src").mkdir(parents=True)
    (home / "project" / "src" / "app.py").write_text("print()")
    (home / "project" / "docs").mkdir()
    (home / "project" / "docs" / "notes.md").write_text("notes")
    _photo(home / ".venv" / "lib" / "icon.png")
    _photo(home / ".venv" / "share" / "logo.png")
    _photo(home / "uploads" / "zipped" / "tulip" / "a.jpg")
    _photo(home / "uploads" / "zipped" / "rose" / "b.jpg")
    (home / "readme.txt").write_text("a file, not a folder")
    assert find_datasets([home, home / "uploads", tmp_path / "missing"]) == [
        home / "flowers",
        home / "uploads" / "zipped",
    ]
    assert find_datasets([home, home / "uploads"], min_classes=1) == [
        home / "flowers",
        home / "one_class",
        home / "uploads" / "zipped",
    ]
