"""The Dataset page's builder and review queue under `streamlit.testing.v1.AppTest`: a dataset
made from nothing (a name, classes, uploaded photos, a webcam burst; a bad burst refused in one
line), and an audit whose planted error is shown with its heatmap, fixed from the review queue
with the page kept on its tab, and undone."""

import base64
import io
import os
import shutil
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from flower_core.data import fixes

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/1_Dataset.py"


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWER_DATA", str(tmp_path / "no_dataset"))
    monkeypatch.setenv("FLOWER_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    st.cache_data.clear()


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def jpeg(synthetic_dataset, name: str, i: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(synthetic_dataset / name / f"{name}_{i:04d}.jpg").save(buffer, "JPEG")
    return buffer.getvalue()


def open_tab(at: AppTest, key: str, label: str) -> None:
    """Open a stateful tab as a click on it would."""
    at.session_state[key] = label
    at.run()


WEBCAM = ":material/photo_camera: Webcam"
AUDIT = ":material/troubleshoot: Audit & review"


def fake_camera(monkeypatch, bursts: list) -> None:
    """The burst component as the browser would answer: its last burst on every run."""
    monkeypatch.setattr("ui.webcam.capture", lambda key, frames, label: bursts[-1] if bursts else None)


def data_url(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


@pytest.mark.slow
def test_a_dataset_is_built_on_the_page_from_a_name_classes_uploads_and_the_webcam(
    synthetic_dataset, tmp_path, monkeypatch
):
    at = open_page()
    at.text_input(key="dataset_new_name").set_value("garden").run()
    at.button(key="dataset_create").click().run()
    assert_clean(at)
    root = tmp_path / "data" / "uploads" / "garden"
    assert Path(at.session_state["data_root"]) == root
    for name in ("daisy", "rose", "tulip"):
        at.text_input(key="dataset_class_new").set_value(name).run()
        at.button(key="dataset_class_add").click().run()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["daisy", "rose", "tulip"]
    at.selectbox(key="dataset_add_class").set_value("rose").run()
    photos = [(f"r{i}.jpg", jpeg(synthetic_dataset, "rose", i), "image/jpeg") for i in range(3)]
    at.file_uploader(key="dataset_add_files").set_value(photos).run()
    at.button(key="dataset_add_files_go").click().run()
    assert_clean(at)
    assert "Added 3 photo(s) to rose" in " ".join(s.value for s in at.success)
    at.selectbox(key="dataset_add_class").set_value("tulip").run()
    bursts = []
    fake_camera(monkeypatch, bursts)
    open_tab(at, "dataset_add_source", WEBCAM)
    bursts.append(
        {"burst": "b1", "frames": [data_url(jpeg(synthetic_dataset, "tulip", i)) for i in range(4)]}
    )
    at.run()
    assert_clean(at)
    assert "Added 4 photo(s) to tulip" in " ".join(s.value for s in at.success)
    at.run()  # the component answers the same burst again: added once
    assert sorted(p.name for p in (root / "tulip").iterdir()) == [
        "webcam-tulip-2.jpg",
        "webcam-tulip-3.jpg",
        "webcam-tulip-4.jpg",
        "webcam-tulip.jpg",
    ]
    at.selectbox(key="dataset_class_pick").set_value("daisy").run()
    at.text_input(key="dataset_class_rename_to").set_value("lily").run()
    at.button(key="dataset_class_rename").click().run()
    assert (root / "lily").is_dir() and not (root / "daisy").exists()


def test_a_page_action_that_is_refused_is_one_line(synthetic_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWER_DATA", str(synthetic_dataset))
    at = open_page()
    at.text_input(key="dataset_class_new").set_value(".hidden").run()
    at.button(key="dataset_class_add").click().run()
    assert [e.value for e in at.error] == [
        "Cannot add the class: a class name must be 1 to 100 characters, not start with '.', and hold no "
        "'/' or '\\'. Received: '.hidden'"
    ]


def test_a_bad_webcam_burst_is_one_line_and_adds_nothing(synthetic_dataset, monkeypatch, tmp_path):
    from flower_core.intake.uploads import add_photos, new_dataset

    home = tmp_path / "data"
    root = new_dataset(home, "cam")
    fixes.add_class(root, "rose")
    add_photos(root, "rose", [("kept.jpg", jpeg(synthetic_dataset, "rose", 0))], home)
    monkeypatch.setenv("FLOWER_DATA", str(root))
    bursts = [{"burst": "bad", "frames": [data_url(b"x"), "data:image/jpeg;base64,@@not base64@@"]}]
    fake_camera(monkeypatch, bursts)
    at = open_page()
    open_tab(at, "dataset_add_source", WEBCAM)
    assert [e.value for e in at.error] == ["The webcam burst was refused: frame 2 is not valid base64"]
    assert [p.name for p in (root / "rose").iterdir()] == ["kept.jpg"]
    assert fixes.journal(root)[-1]["action"] == "add_photos"


@pytest.mark.slow
def test_the_review_queue_fixes_a_planted_error_and_undoes_it(synthetic_dataset, tmp_path, monkeypatch):
    root = tmp_path / "flowers"
    shutil.copytree(synthetic_dataset, root)
    os.rename(root / "daisy" / "daisy_0003.jpg", root / "tulip" / "daisy_0003.jpg")
    monkeypatch.setenv("FLOWER_DATA", str(root))
    at = open_page()
    open_tab(at, "dataset_section", AUDIT)
    at.number_input(key="dataset_audit_size").set_value(96).run()
    at.button(key="dataset_audit_go").click().run()
    assert_clean(at)
    assert at.session_state["dataset_audit"].suspects[0]["path"] == "tulip/daisy_0003.jpg"
    at.toggle(key="dataset_heatmap").set_value(True).run()
    assert_clean(at)
    assert "tulip/daisy_0003.jpg · evidence for daisy (Grad-CAM, audit head)" in captions(at)
    assert at.button(key="dataset_move").label == "Move to daisy"
    at.button(key="dataset_move").click().run()
    assert_clean(at)
    assert (root / "daisy" / "daisy_0003.jpg").is_file()
    assert fixes.journal(root)[-1]["action"] == "move"
    # The next suspect's heatmap is drawn with the head already fitted and the backbone built.
    assert any("(Grad-CAM, audit head)" in c for c in captions(at)), captions(at)
    assert at.session_state["dataset_section"] == AUDIT  # the fix kept the person on this tab
    at.button(key="dataset_undo").click().run()
    assert (root / "tulip" / "daisy_0003.jpg").is_file()
    assert len(at.get("plotly_chart")) >= 1


def captions(at: AppTest) -> list[str]:
    """The captions of the images on the page."""
    return [caption for image in at.get("image") for caption in image.captions]
