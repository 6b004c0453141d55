"""Dataset statistics: a made dataset with one corrupt file, one exact and one near duplicate
must be reported with exactly those; measured values are checked against known photos."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flower_core.data.dataset import Split, scan_dataset, split_dataset
from flower_core.data.eda import (
    NEAR_DUPLICATE_BITS,
    dataset_report,
    format_report,
    image_table,
    imbalance_ratio,
    near_duplicates,
    perceptual_hashes,
    split_leaks,
    split_table,
)
from flower_core.data.synthetic import generate

from .conftest import REAL_DATA, needs_real_data


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flower_core", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def flawed_dataset(tmp_path_factory):
    """Synthetic photos plus one corrupt file, one exact copy and one resized PNG copy."""
    root = tmp_path_factory.mktemp("eda") / "flowers"
    generate(root, per_class=6, size=64, seed=3)
    (root / "daisy" / "broken.jpg").write_bytes(b"this is not a photo")
    shutil.copy(root / "rose" / "rose_0000.jpg", root / "rose" / "rose_copy.jpg")
    original = Image.open(root / "tulip" / "tulip_0001.jpg")
    original.resize((90, 90), Image.Resampling.BICUBIC).save(root / "tulip" / "tulip_big.png")
    (root / "notes.txt").write_text("not a class, not a photo")
    return root


def _check_flawed_report(report: dict) -> None:
    assert report["images"] == 32 and report["synthetic"] is True
    assert report["counts"] == {"daisy": 6, "dandelion": 6, "rose": 7, "sunflower": 6, "tulip": 7}
    assert report["imbalance_ratio"] == pytest.approx(7 / 6, abs=1e-3)
    [unreadable] = report["unreadable"]
    assert unreadable["path"] == "daisy/broken.jpg"
    assert unreadable["reason"].startswith("not an image")
    assert report["duplicates"] == {
        "exact": [["rose/rose_0000.jpg", "rose/rose_copy.jpg"]],
        "near": [["tulip/tulip_0001.jpg", "tulip/tulip_big.png"]],
        "cross_class": [],
    }
    assert report["formats"] == {"JPEG": 31, "PNG": 1}
    assert report["sizes"]["width"] == {"min": 64, "median": 64, "max": 90}
    split_sizes = {
        part: sum(row[part] for row in report["split"]["counts"].values())
        for part in ("train", "val", "test", "total")
    }
    assert split_sizes["total"] == 32 and split_sizes["train"] > split_sizes["test"] > 0


def test_report_finds_exactly_the_corrupt_file_and_the_duplicates(flawed_dataset):
    progress = []
    report = dataset_report(flawed_dataset, progress=lambda *step: progress.append(step))
    _check_flawed_report(report)
    assert json.loads(json.dumps(report)) == report
    done = [step[0] for step in progress]
    # 33 files checked, then 32 readable ones measured (the unreadable one counts as done).
    assert progress[-1] == (66, 66) and done == sorted(done) and len(done) == 33 + 32
    assert [row["class"] for row in report["per_class"]] == report["classes"]
    assert report["per_class"][2]["images"] == 7
    text = format_report(report)
    for expected in (
        "32 images, 5 classes, 1 unreadable",
        "daisy/broken.jpg: not an image",
        "exact duplicates: 1 groups",
        "rose/rose_0000.jpg = rose/rose_copy.jpg",
        "near duplicates: 1 groups",
        "tulip/tulip_0001.jpg = tulip/tulip_big.png",
    ):
        assert expected in text


def test_cli_eda_json_and_text(flawed_dataset):
    result = _cli("eda", "--data", str(flawed_dataset), "--json")
    assert result.returncode == 0, result.stderr
    _check_flawed_report(json.loads(result.stdout.strip().splitlines()[-1]))
    result = _cli("eda", "--data", str(flawed_dataset))
    assert result.returncode == 0 and "near duplicates: 1 groups" in result.stdout


def test_cli_eda_on_a_missing_folder_is_one_line_error(tmp_path):
    result = _cli("eda", "--data", str(tmp_path / "nowhere"), "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: dataset folder not found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_image_table_measures_size_colour_and_exif_rotation(tmp_path):
    (tmp_path / "warm").mkdir()
    (tmp_path / "cool").mkdir()
    Image.new("RGB", (90, 60), (200, 100, 50)).save(tmp_path / "warm" / "wide.png")
    exif = Image.Exif()
    exif[274] = 6  # shown rotated by 90 degrees, as a phone portrait photo
    Image.new("RGB", (90, 60), (20, 60, 220)).save(tmp_path / "cool" / "turned.jpg", exif=exif)
    table = image_table(scan_dataset(tmp_path)).set_index("path")
    wide, turned = table.loc["warm/wide.png"], table.loc["cool/turned.jpg"]
    assert (wide["width"], wide["height"], wide["aspect"]) == (90, 60, 1.5)
    assert (turned["width"], turned["height"], turned["aspect"]) == (60, 90, pytest.approx(0.6667))
    assert wide["file_bytes"] == (tmp_path / "warm" / "wide.png").stat().st_size
    assert (wide["mean_r"], wide["mean_g"], wide["mean_b"]) == (200, 100, 50)
    assert wide["brightness"] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=0.01)
    assert turned["mean_b"] > 200 > 30 > turned["mean_r"]
    assert (wide["class"], wide["format"], turned["format"]) == ("warm", "PNG", "JPEG")
    assert table["sha256"].nunique() == 2


def test_perceptual_hash_survives_resizing_but_tells_photos_apart(synthetic_dataset):
    photo = Image.open(synthetic_dataset / "rose" / "rose_0003.jpg")
    other = Image.open(synthetic_dataset / "rose" / "rose_0004.jpg")

    def distance(a, b):
        return sum(
            bin(int(x, 16) ^ int(y, 16)).count("1")
            for x, y in zip(perceptual_hashes(a), perceptual_hashes(b), strict=True)
        )

    assert distance(photo, photo.resize((150, 150))) <= NEAR_DUPLICATE_BITS
    assert distance(photo, other) > 3 * NEAR_DUPLICATE_BITS


def test_near_duplicates_link_chains_and_skip_identical_only_groups():
    table = {
        "path": ["a/1", "a/2", "b/3", "b/4", "b/5"],
        "sha256": ["x", "y", "z", "z", "w"],
        "dhash": ["0" * 16, "7" + "0" * 15, "f" * 16, "f" * 16, "0" * 15 + "1"],
        "ahash": ["0" * 16] * 5,
    }
    groups = near_duplicates(pd.DataFrame(table), max_bits=4)
    assert groups == [["a/1", "a/2", "b/5"]]
    assert near_duplicates(pd.DataFrame(table), max_bits=0) == []


def test_split_leaks_lists_groups_across_parts():
    split = Split(train=["a/1", "b/1", "b/2"], val=["c/1"], test=["a/2", "c/2"], seed=0)
    groups = [["a/1", "a/2"], ["b/1", "b/2"], ["c/1", "c/2"], ["a/1", "gone/9"]]
    assert split_leaks(groups, split) == [
        {"files": ["a/1", "a/2"], "parts": ["train", "test"]},
        {"files": ["c/1", "c/2"], "parts": ["val", "test"]},
    ]


def test_split_table_counts_each_class_in_each_part(flawed_dataset):
    dataset = scan_dataset(flawed_dataset)
    split = split_dataset(dataset, val_fraction=0.2, test_fraction=0.2, seed=1)
    table = split_table(split, dataset.class_names)
    assert list(table.columns) == ["train", "val", "test", "total"]
    assert table.loc["rose"].tolist() == [5, 1, 1, 7]
    assert table["total"].to_dict() == dataset.counts()
    assert imbalance_ratio({"a": 10, "b": 4}) == 2.5


@pytest.mark.real_data
@needs_real_data
def test_real_photos_report_counts_every_photo_its_duplicates_and_the_imbalance():
    # How long it takes is measured by bench/, not asserted here: a loaded machine is slower.
    report = dataset_report(REAL_DATA)
    assert report["images"] == 4317 and report["unreadable"] == []
    assert len(report["duplicates"]["exact"]) >= 1
    assert np.isclose(report["imbalance_ratio"], 1052 / 733, atol=1e-3)
