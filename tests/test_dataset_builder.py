"""Building a dataset (`flower_core.intake.uploads`: new datasets, photos added to a class with
the uploads' checks and quota, an archive, a webcam burst, a quick subset of links) and training
again after fixes (`flower_core.training.retrain`)."""

import base64
import io
from pathlib import Path

import pytest

from flower_core.data import fixes
from flower_core.data.dataset import scan_dataset
from flower_core.errors import FlowerError
from flower_core.intake.uploads import (
    UPLOAD_QUOTA_ENV,
    add_archive,
    add_photos,
    new_dataset,
    quick_subset,
)
from flower_core.intake.webcam import MAX_BURST, burst_id, burst_photos
from tests.archives import write_archive


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "data"


def photo(synthetic_dataset, name="daisy", i=0) -> bytes:
    return (synthetic_dataset / name / f"{name}_{i:04d}.jpg").read_bytes()


def test_a_new_dataset_fills_class_by_class_and_undo_takes_photos_out(synthetic_dataset, home):
    root = new_dataset(home, "My flowers!")
    assert root == home / "uploads" / "My-flowers" and not any(root.iterdir())
    for name in ("daisy", "rose"):
        fixes.add_class(root, name)
    skipped = []
    written = add_photos(
        root,
        "daisy",
        [
            ("a.jpg", photo(synthetic_dataset)),
            ("a.jpg", photo(synthetic_dataset, i=1)),
            ("notes.txt", b"x"),
            ("broken.jpg", b"not a jpeg"),
        ],
        home,
        on_skip=skipped.append,
    )
    assert written == ["daisy/a.jpg", "daisy/a-2.jpg"] and skipped == ["notes.txt", "broken.jpg"]
    add_photos(root, "rose", [("r.jpg", photo(synthetic_dataset, "rose"))], home)
    assert scan_dataset(root).counts() == {"daisy": 2, "rose": 1}
    fixes.undo(root)
    assert not (root / "rose" / "r.jpg").exists() and (root / fixes.EXCLUDED_DIR / "rose" / "r.jpg").is_file()


def test_photos_over_the_limits_or_the_quota_or_outside_the_app_are_refused(
    synthetic_dataset, home, monkeypatch
):
    root = new_dataset(home, "small")
    fixes.add_class(root, "daisy")
    big = photo(synthetic_dataset)
    with pytest.raises(FlowerError, match="over the limit of 0.001 MB per file"):
        add_photos(root, "daisy", [("a.jpg", big)], home, max_mb=0.001)
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, str(len(big) / 2 / 1024**2))
    with pytest.raises(FlowerError, match="over the quota"):
        add_photos(root, "daisy", [("a.jpg", big)], home)
    with pytest.raises(FlowerError, match="only to a dataset made in the app"):
        add_photos(synthetic_dataset, "daisy", [("a.jpg", big)], home)
    with pytest.raises(FlowerError, match="no class 'lily'"):
        add_photos(root, "lily", [("a.jpg", big)], home)
    assert not any((root / "daisy").iterdir()) and fixes.journal(root)[-1]["action"] == "add_class"


@pytest.mark.parametrize("name", ["holiday.zip", "holiday.tar.gz", "holiday.tgz", "holiday.tar"])
def test_an_archive_of_photos_goes_into_one_class_without_its_other_files(
    synthetic_dataset, home, tmp_path, name
):
    root = new_dataset(home, "archived")
    fixes.add_class(root, "rose")
    members = {
        "holiday/one.jpg": photo(synthetic_dataset, "rose"),
        "holiday/deeper/two.jpg": photo(synthetic_dataset, "rose", 1),
        "holiday/deeper/one.jpg": photo(synthetic_dataset, "rose", 2),
        "holiday/run.sh": b"echo",
    }
    skipped = []
    with open(write_archive(tmp_path / name, members), "rb") as source:
        written = add_archive(root, "rose", source, home, on_skip=skipped.append)
    assert sorted(written) == ["rose/one-2.jpg", "rose/one.jpg", "rose/two.jpg"]
    assert skipped == ["holiday/run.sh"]
    assert fixes.journal(root)[-1]["action"] == "add_photos"
    assert not list((home / "uploads").glob(".archive-*"))


@pytest.mark.parametrize(
    "members, symlink, reason",
    [
        ({"../evil.jpg": b"x"}, None, "'..'"),
        ({"a.jpg": b"x"}, "b.jpg", "link"),
        ({"a.jpg": b"x" * 3 * 1024**2}, None, "unpacks to more than"),
        ({"a.jpg": b"not a jpeg"}, None, None),
    ],
)
def test_an_unsafe_or_unreadable_archive_adds_nothing(
    synthetic_dataset, home, tmp_path, members, symlink, reason
):
    root = new_dataset(home, "guarded")
    fixes.add_class(root, "rose")
    add_photos(root, "rose", [("kept.jpg", photo(synthetic_dataset, "rose"))], home)
    with open(write_archive(tmp_path / "bad.tgz", members, symlink), "rb") as source:
        if reason is None:  # not a photo once decoded: left out, nothing written
            assert add_archive(root, "rose", source, home) == []
        else:
            with pytest.raises(FlowerError, match=reason):
                add_archive(root, "rose", source, home, max_mb=2)
    assert [p.name for p in (root / "rose").iterdir()] == ["kept.jpg"]
    assert not list((home / "uploads").glob(".archive-*"))
    with pytest.raises(FlowerError, match="not a valid"):
        add_archive(root, "rose", io.BytesIO(b"plain text"), home)


def test_a_quick_subset_links_the_same_seeded_photos_per_class(synthetic_dataset, home):
    first = quick_subset(synthetic_dataset, 5, 3, home, "subset")
    second = quick_subset(synthetic_dataset, 5, 3, home, "subset")
    assert second.name == "subset-2"
    dataset = scan_dataset(first)
    assert set(dataset.counts().values()) == {5}
    assert dataset.files == scan_dataset(second).files
    links = [first / rel for rel in dataset.files]
    assert all(p.is_symlink() and p.resolve().is_relative_to(synthetic_dataset.resolve()) for p in links)
    assert scan_dataset(quick_subset(synthetic_dataset, 5, 4, home, "other")).files != dataset.files
    moved = fixes.move_photo(first, dataset.files[0], "rose")
    assert (first / moved["to"]).is_symlink()  # the link moves, the original stays
    assert (synthetic_dataset / dataset.files[0]).is_file()
    with pytest.raises(FlowerError, match="at least 1 photo per class"):
        quick_subset(synthetic_dataset, 0, 0, home, "none")


def test_train_again_takes_the_last_run_on_the_dataset(synthetic_dataset, tmp_path, no_worker):
    from flower_core.config import make_config
    from flower_core.store.runs import Run
    from flower_core.training import jobs, retrain

    runs = tmp_path / "runs"
    with pytest.raises(FlowerError, match="no run on"):
        retrain.train_again(synthetic_dataset, runs)
    config = make_config("base", backbone="mobilenet", weights="none", image_size=32, epochs=2, seed=7)
    first = jobs.create_run(config, synthetic_dataset, runs)
    run_id, again = retrain.last_run_on(synthetic_dataset, runs)
    assert run_id == first.name and again == config
    second = retrain.train_again(synthetic_dataset, runs)
    assert second != first
    assert Run.open(second).config.repeats == first.name  # Compare pairs them as before and after


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "no frames in the burst"),
        ({"burst": "1", "frames": []}, "no frames in the burst"),
        ({"burst": "1", "frames": ["data:image/jpeg;base64,AA=="] * (MAX_BURST + 1)}, "at most"),
        ({"burst": "1", "frames": ["data:text/html;base64,AA=="]}, "frame 1 is not a JPEG data URL"),
        ({"burst": "1", "frames": [7]}, "frame 1 is not a JPEG data URL"),
        ({"burst": "1", "frames": ["data:image/jpeg;base64,AA==", "data:image/jpeg;base64,!!"]}, "frame 2"),
    ],
)
def test_a_webcam_burst_that_is_not_jpeg_frames_is_one_line(value, reason):
    with pytest.raises(FlowerError, match=reason):
        burst_photos(value, "rose")


def test_a_webcam_burst_becomes_photos_named_after_the_class(synthetic_dataset, home):
    data = photo(synthetic_dataset, "rose")
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    value = {"burst": "b7", "frames": [url, url]}
    assert burst_id(value) == "b7" and burst_id(None) is None
    root = new_dataset(home, "cam")
    fixes.add_class(root, "rose")
    assert add_photos(root, "rose", burst_photos(value, "rose"), home) == [
        "rose/webcam-rose.jpg",
        "rose/webcam-rose-2.jpg",
    ]
    assert (root / "rose" / "webcam-rose-2.jpg").read_bytes() == data
