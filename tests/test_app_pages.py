"""Every page of the app under `streamlit.testing.v1.AppTest`: with no dataset, with the
synthetic set and with runs present; the Train button queues a job whose progress shows; the
Classify page predicts and explains an uploaded photo; Home's dataset sources work."""

import datetime as dt
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from flower_core.config import SETTINGS, SUGGESTED_PRESET, make_config
from flower_core.data.augment_preview import maps_note
from flower_core.evaluation.compare import COMPACT_COLUMNS, TABLE_COLUMNS
from flower_core.explain.faithfulness import VERDICTS
from flower_core.store.runs import Run, append_jsonl
from flower_core.training import jobs
from flower_core.training.progress import ExtractionProgress, update_status

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["pages/1_Dataset.py", "pages/2_Train.py", "pages/3_Compare.py", "pages/4_Classify.py"]
# The two finished runs of `app_runs` (tests/conftest.py), oldest first.
RUN_NAMES = ("base-mobilenet-aaaa", "dropout20-mobilenet-bbbb")


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch):
    """No dataset and an offline machine by default; fresh Streamlit caches for each test."""
    monkeypatch.setenv("FLOWER_DATA", str(tmp_path / "no_dataset"))
    monkeypatch.setenv("FLOWER_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def synthetic(synthetic_dataset, monkeypatch) -> Path:
    monkeypatch.setenv("FLOWER_DATA", str(synthetic_dataset))
    return synthetic_dataset


def open_page(page: str | None = None, errors: bool = False) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(page).run()
    assert_clean(at, errors)
    return at


def open_explore(at: AppTest) -> AppTest:
    """The Dataset page's Explore tab, opened as a click on it would (its tabs are stateful: only
    the open one runs)."""
    at.session_state["dataset_section"] = ":material/query_stats: Explore"
    return at.run()


def assert_clean(at: AppTest, errors: bool = False) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert errors or not at.error, [e.value for e in at.error]


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.mark.parametrize("page", [None, *PAGES])
def test_pages_render_without_a_dataset(page):
    at = open_page(page)
    if page == "pages/1_Dataset.py":
        open_explore(at)
    if page in (None, "pages/1_Dataset.py"):
        assert "No" in texts(at.info) + texts(at.warning)


def test_home_offers_every_dataset_source_and_says_why_download_is_unavailable():
    at = open_page()
    assert "Get a dataset" in texts(at.subheader)
    assert len(at.tabs) == 4
    assert "no internet connection" in texts(at.warning)
    assert at.file_uploader(key="home_zip").allowed_type == [".zip", ".tar", ".tar.gz", ".tgz"]
    assert ".tgz" in texts(at.warning)  # the offline download says to upload the archive it names


def test_the_menu_and_homes_directory_show_the_pages_of_one_table():
    from ui.common import PAGES as TABLE

    at = open_page()
    menu = [(link.proto.label, link.proto.icon) for link in at.sidebar.get("page_link")]
    assert menu == [(entry.title, entry.icon) for entry in TABLE.values()]
    directory = [(link.proto.label, link.proto.icon) for link in at.main.get("page_link")]
    others = [entry for entry in TABLE.values() if entry.script]
    assert directory == [(entry.title, entry.icon) for entry in others]
    assert {entry.description for entry in others} <= {caption.value for caption in at.caption}


def test_home_lists_only_folders_with_photos_in_two_class_folders(synthetic_dataset, tmp_path):
    home = tmp_path / "data"
    (home / "project" / "flower_core").mkdir(parents=True)
    (home / "project" / "tests").mkdir()
    (home / "project" / "flower_core" / "data.py").write_text("")
    (home / "venv" / "lib").mkdir(parents=True)
    (home / "venv" / "bin").mkdir()
    (home / "demo").symlink_to(synthetic_dataset)
    at = open_page()
    assert at.selectbox(key="home_found").options == [str(home / "demo")]


def test_dataset_page_shows_duplicates_with_thumbnails(synthetic_dataset, tmp_path, monkeypatch):
    root = tmp_path / "with_copies"
    for name in ("daisy", "rose"):
        (root / name).mkdir(parents=True)
        for photo in sorted((synthetic_dataset / name).glob("*.jpg"))[:4]:
            (root / name / photo.name).write_bytes(photo.read_bytes())
    (root / "rose" / "copy.jpg").write_bytes((root / "rose" / "rose_0001.jpg").read_bytes())
    monkeypatch.setenv("FLOWER_DATA", str(root))
    at = open_explore(open_page("pages/1_Dataset.py"))
    exact = next(d.value for d in at.dataframe if "photo" in d.value.columns)
    assert len(exact) == 2 and all(uri.startswith("data:image/jpeg;base64,") for uri in exact["photo"])


@pytest.mark.parametrize("page", [None, *PAGES])
def test_pages_render_with_the_synthetic_set(synthetic, page):
    at = open_page(page)
    if page == "pages/1_Dataset.py":
        open_explore(at)
        assert_clean(at)
        assert len(at.get("plotly_chart")) >= 8
        assert len(at.get("imgs")) + len(at.get("image")) >= 5
    if page is None:
        assert "badge[:material/draw: synthetic demo set" in texts(at.markdown)


@pytest.mark.parametrize("page", [None, *PAGES])
def test_pages_render_with_runs_present(synthetic, app_runs, page):
    at = open_page(page, errors=page == "pages/2_Train.py")
    if page == "pages/3_Compare.py":
        assert len(at.dataframe[0].value) == 3
        assert len(at.get("plotly_chart")) >= 4
    if page == "pages/2_Train.py":  # the newest run failed: the page says why, in one line
        assert texts(at.error) == "Training failed: ImageNet weights for backbone 'vgg16' could not be loaded"


def test_home_generates_the_synthetic_set_and_uses_it(tmp_path):
    at = open_page()
    at.number_input(key="home_per_class").set_value(10)
    at.select_slider(key="home_size").set_value(64)
    at.button(key="home_synth").click().run()
    assert_clean(at)
    assert "synthetic demo set" in texts(at.success)
    assert Path(at.session_state["data_root"]) == tmp_path / "data" / "synthetic"
    assert (tmp_path / "data" / "synthetic" / "SYNTHETIC.txt").is_file()


def _zip_of(dataset: Path, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.write(dataset / name, f"flowers/{name}")
    return buffer.getvalue()


def test_home_unpacks_an_uploaded_zip_and_refuses_an_unsafe_one(synthetic, tmp_path):
    at = open_page()
    good = io.BytesIO(_zip_of(synthetic, ["daisy/daisy_0000.jpg", "rose/rose_0000.jpg"]))
    with zipfile.ZipFile(good, "a") as archive:
        archive.writestr("flowers/daisy/weights.pth", b"a checkpoint a weights path could name")
    at.file_uploader(key="home_zip").set_value(("my flowers.zip", good.getvalue(), "application/zip")).run()
    at.button(key="home_unzip").click().run()
    assert_clean(at)
    assert Path(at.session_state["data_root"]) == tmp_path / "data/uploads/my-flowers/flowers"
    assert "1 non-photo file(s) left out" in texts(at.success)
    assert not (tmp_path / "data/uploads/my-flowers/flowers/daisy/weights.pth").exists()
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../evil.jpg", b"x")
    at.file_uploader(key="home_zip").set_value(("evil.zip", evil.getvalue(), "application/zip"))
    at.run().button(key="home_unzip").click().run()
    assert "The archive was refused" in texts(at.error) and "'..'" in texts(at.error)
    assert not (tmp_path / "data" / "evil.jpg").exists()


def test_home_unpacks_an_uploaded_tgz(synthetic, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ["daisy/daisy_0000.jpg", "rose/rose_0000.jpg"]:
            archive.add(synthetic / name, f"flower_photos/{name}")
    at = open_page()
    at.file_uploader(key="home_zip").set_value(("flower_photos.tgz", buffer.getvalue(), "application/gzip"))
    at.run()
    assert at.text_input(key="home_zname").value == "flower_photos"
    at.button(key="home_unzip").click().run()
    assert_clean(at)
    assert Path(at.session_state["data_root"]) == tmp_path / "data/uploads/flower_photos/flower_photos"


def _submit_small_run(at: AppTest) -> AppTest:
    key = "train_best_"
    at.selectbox(key=key + "backbone").set_value("mobilenet")
    at.selectbox(key=key + "weights").set_value("none")
    at.select_slider(key=key + "image_size").set_value(64)
    at.number_input(key=key + "epochs").set_value(3)
    at.button(key="train_submit").click()
    return at.run()


def test_train_page_opens_on_the_suggested_preset_and_its_image_size(synthetic):
    at = open_page("pages/2_Train.py")
    assert_clean(at)
    assert (
        at.select_slider(key="train_best_image_size").value == make_config(SUGGESTED_PRESET).image_size == 384
    )
    estimate = [c.value for c in at.caption if "With the preset's settings, about" in c.value]
    assert estimate and "features computed first" in estimate[0], "the time before the click, cold cache"


def test_the_time_estimates_count_the_photos_of_the_loaded_dataset_not_its_folders(synthetic, monkeypatch):
    from flower_core.training import estimate

    at = open_page("pages/2_Train.py")
    listed = []
    monkeypatch.setattr(estimate, "list_candidates", lambda root: listed.append(root))
    monkeypatch.setattr(jobs, "list_candidates", lambda root: listed.append(root))  # the launch checks
    at.selectbox(key="train_preset").set_value("dropout20")  # estimates not cached yet
    at.number_input(key="study_seeds").set_value(2)
    at.selectbox(key="sweep_preset").set_value("dropout20").run()
    assert_clean(at)
    assert [c.value for c in at.caption if "With the preset's settings, about" in c.value]
    assert [c.value for c in at.caption if c.value.startswith("14 runs, about")], "the study's estimate"
    assert not listed, "an estimate listed the dataset's folders again"


def test_train_button_queues_a_job_and_the_page_follows_its_progress(synthetic, no_worker):
    started = no_worker
    at = open_page("pages/2_Train.py")
    at.selectbox(key="train_best_augment_cache").set_value("views")
    at.number_input(key="train_best_augment_views").set_value(3)
    at = _submit_small_run(at)
    assert_clean(at)
    assert started and len(jobs.queued_runs()) == 1
    run_dir = jobs.queued_runs()[0]
    stored = json.loads((run_dir / "config.json").read_text())
    assert (stored["image_size"], stored["augment_cache"], stored["augment_views"]) == (64, "views", 3)
    assert [p.value for p in at.get("progress")] == [0, 0]
    update_status(
        run_dir,
        state="running",
        started="2026-01-01T00:00:00+00:00",
        epoch=1,
        epochs=3,
        batch=2,
        batches=4,
        phase="head",
        eta=42.0,
        message="head: epoch 2/3",
    )
    append_jsonl(
        run_dir / "history.jsonl",
        {
            "epoch": 1,
            "loss": 1.2,
            "accuracy": 0.5,
            "val_loss": 1.3,
            "val_accuracy": 0.4,
            "lr": 1e-3,
            "seconds": 1.0,
        },
    )
    at.run()
    assert_clean(at)
    assert [p.value for p in at.get("progress")] == [33, 50]
    assert "0:00:42" in texts(at.metric)
    assert "epoch   1" in texts(at.code)
    at.button(key="train_cancel").click().run()
    assert (run_dir / "cancel.request").is_file()


def test_train_page_shows_feature_extraction_once_with_the_whole_run_s_eta(synthetic, no_worker):
    at = _submit_small_run(open_page("pages/2_Train.py"))
    run_dir = jobs.queued_runs()[0]
    at.run()
    estimate = Run.open(run_dir).status.estimate.seconds
    assert str(dt.timedelta(seconds=int(estimate))) in texts(at.metric)  # queued: the ETA is the estimate
    passes = {"train features": 100, "validation features": 20, "test features": 20}
    extraction = ExtractionProgress(passes, clock=iter([0.0, 2.0]).__next__)
    extraction.finish("train features")  # the cache held them
    stats = extraction.update("validation features", 10, 20)
    update_status(run_dir, state="running", message=stats["message"], extraction=stats, eta=65.0)
    at.run()
    assert_clean(at)
    bar = at.get("progress")[0]
    assert bar.value == 25
    assert bar.proto.text == "computing features 10/40 (validation features) · 5.0 photos/s"
    shown = texts(at.caption) + texts(at.code) + texts(at.markdown)
    assert stats["message"] not in shown  # the bar says it, once
    assert "0:01:05" in texts(at.metric)


def test_the_job_shows_what_it_is_doing_until_the_first_epoch_then_its_curves(synthetic, no_worker):
    at = _submit_small_run(open_page("pages/2_Train.py"))
    run_dir = jobs.queued_runs()[0]

    def placeholder() -> str:
        return " ".join(i.value for i in at.info if "curves appear here after the first epoch" in i.value)

    assert "waiting in the queue" in placeholder() and not at.get("plotly_chart")
    stats = ExtractionProgress({"train features": 40}).update("train features", 10, 40)
    update_status(run_dir, state="running", extraction=stats, eta=65.0, epochs=3)
    at.run()
    assert_clean(at)
    assert "computing the photos' features" in placeholder() and "0:01:05 left" in placeholder()
    assert not at.get("plotly_chart"), "a chart box before the first epoch"
    assert all(code.value.strip() for code in at.code), "an empty log box before the first epoch"
    update_status(run_dir, extraction=None, epoch=1, message="head: epoch 2/3")
    append_jsonl(run_dir / "history.jsonl", {"epoch": 1, "loss": 1.2, "accuracy": 0.5, "seconds": 1.0})
    at.run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1 and not placeholder()
    assert "epoch   1" in texts(at.code)


def test_train_form_previews_augmentation_with_its_settings(synthetic):
    at = open_page("pages/2_Train.py")
    # best: no augmentation, and the preview still shows, saying so (it helps decide)
    off = next(e for e in at.expander if e.label == "Augmentation preview (augmentation is off)")
    assert "Augmentation is off" in texts(off.caption) and not off.info
    assert len(off.get("image")) == 9
    at.selectbox(key="train_preset").set_value("dropout20").run()
    assert_clean(at)
    preview = next(e for e in at.expander if e.label == "Augmentation preview")
    assert len(preview.get("image")) == 9
    backbone = at.selectbox(key="train_dropout20_backbone").value
    assert maps_note(make_config("dropout20").image_size, backbone) in texts(preview.info)


def test_the_augmentation_preview_follows_the_settings_before_train_is_pressed(synthetic, no_worker):
    at = open_page("pages/2_Train.py")
    at.selectbox(key="train_preset").set_value("dropout20").run()
    base = make_config("dropout20")

    def preview_caption() -> str:
        preview = next(e for e in at.expander if e.label == "Augmentation preview")
        return texts(preview.caption)

    assert f"at {base.image_size} px, seed {base.seed}:" in preview_caption()
    size = next(option for option in SETTINGS["image_size"].options if option != base.image_size)
    at.select_slider(key="train_dropout20_image_size").set_value(size).run()
    at.number_input(key="train_dropout20_seed").set_value(base.seed + 7).run()
    assert_clean(at)
    assert f"at {size} px, seed {base.seed + 7}:" in preview_caption()
    backbone = at.selectbox(key="train_dropout20_backbone").value
    assert maps_note(size, backbone) in texts(at.info)
    at.selectbox(key="train_dropout20_augment_cache").set_value("views").run()
    assert maps_note(size, backbone) not in texts(at.info)
    at.toggle(key="train_dropout20_augment").set_value(False).run()
    assert not [e for e in at.expander if e.label == "Augmentation preview"]
    assert not jobs.queued_runs(), "no setting change queues a run"
    at.button(key="train_submit").click().run()
    [run_dir] = jobs.queued_runs()
    stored = json.loads((run_dir / "config.json").read_text())
    assert (stored["image_size"], stored["seed"], stored["augment"]) == (size, base.seed + 7, False)


def test_train_refuses_a_missing_weights_file_in_one_line(synthetic, tmp_path):
    at = open_page("pages/2_Train.py")
    at.selectbox(key="train_best_weights").set_value("file")
    at.text_input(key="train_best_weights_path").set_value(str(tmp_path / "nope.h5")).run()
    assert texts(at.warning).startswith("Cannot start training: weights file not found")
    assert at.button(key="train_submit").disabled and not jobs.queued_runs()


def test_the_train_page_says_no_model_is_kept_when_a_kill_left_none(synthetic):
    run_dir = Path(os.environ["FLOWER_RUNS"]) / "20260101-000000-base-mobilenet-dead"
    run_dir.mkdir(parents=True)
    config = {"preset": "base", "backbone": "mobilenet", "epochs": 30}
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "status.json").write_text(
        json.dumps({"state": "running", "epoch": 2, "epochs": 30, "pid": -1, "host": os.uname().nodename})
    )
    epoch = {"epoch": 1, "phase": "head", "loss": 1.2, "accuracy": 0.5, "val_loss": 0.9, "val_accuracy": 0.6}
    append_jsonl(run_dir / "history.jsonl", {**epoch, "lr": 1e-3, "seconds": 2.0})
    at = open_page("pages/2_Train.py")
    assert texts(at.warning) == (
        "the training process stopped (killed or crashed) after epoch 1 of 30; "
        "no model was kept (none had been saved yet)"
    )


def test_train_refuses_an_empty_weights_path_in_one_line(synthetic):
    at = open_page("pages/2_Train.py")
    at.selectbox(key="train_best_weights").set_value("file").run()
    assert not at.exception
    assert texts(at.warning) == (
        "Cannot start training: no weights given: choose imagenet or none, or give the path of a "
        "weights file. Received: weights=''"
    )
    assert at.button(key="train_submit").disabled and not jobs.queued_runs()


def test_a_queue_without_a_worker_can_be_restarted(synthetic, no_worker):
    started = no_worker
    at = _submit_small_run(open_page("pages/2_Train.py"))
    run_dir = jobs.queued_runs()[0]
    update_status(run_dir, state="queued", queued="2026-01-01T00:00:00+00:00")
    at.run()
    assert "No worker is training this queue" in texts(at.warning)
    at.button(key="train_resume").click().run()
    assert len(started) == 2


def test_a_finished_job_shows_its_results_and_a_second_session_sees_the_running_one(synthetic, app_runs):
    worst = min(  # the session's own run, not the default (best) one, is explained next
        ("20260101-000000-base-mobilenet-aaaa", "20260101-000100-dropout20-mobilenet-bbbb"),
        key=lambda run_id: json.loads((app_runs / run_id / "metrics.json").read_text())["test_accuracy"],
    )
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["train_run"] = worst
    at.run().switch_page("pages/2_Train.py").run()
    assert_clean(at)
    assert "Test accuracy" in [m.label for m in at.metric]
    assert texts(at.success).startswith(
        "Stopped: stopped at epoch 2 of 30; the model of epoch 2 (the best until then) is kept"
    )
    assert "epoch   2" in texts(at.code)
    assert any("Confusion matrix" in json.dumps(c.proto.spec) for c in at.get("plotly_chart"))
    at.button(key="train_explain").click().run()
    assert_clean(at)
    assert at.selectbox(key="classify_run_select").value == worst
    run_dir = app_runs / "20260101-000000-base-mobilenet-aaaa"
    update_status(run_dir, state="running", epoch=1, epochs=2, pid=os.getpid())
    second = open_page("pages/2_Train.py")
    assert run_dir.name in texts(second.caption)
    assert len(second.get("progress")) == 2


def test_classify_predicts_and_explains_an_uploaded_photo(synthetic, app_runs):
    at = open_page("pages/4_Classify.py")
    photo = (synthetic / "rose" / "rose_0003.jpg").read_bytes()
    at.file_uploader(key="classify_upload").set_value(("rose.jpg", photo, "image/jpeg")).run()
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert "Prediction" in labels and "Faithfulness" in labels
    assert set(VERDICTS.values()) & {c.value for c in at.caption}  # the score's meaning beside it
    assert len(at.get("imgs")) + len(at.get("image")) >= 2
    assert any("Top classes" in json.dumps(c.proto.spec) for c in at.get("plotly_chart"))
    at.selectbox(key="classify_method").set_value("gradcam++").run()
    assert_clean(at)


def test_two_sessions_classifying_share_one_loaded_model(synthetic, app_runs, monkeypatch):
    """A class at once must not load the model once per person: one copy for every session."""
    import flower_core.evaluation.predict

    loaded, real_load = [], flower_core.evaluation.predict.load_run
    monkeypatch.setattr(
        flower_core.evaluation.predict,
        "load_run",
        lambda run_dir: loaded.append(real_load(run_dir)) or loaded[-1],
    )
    for photo in ("rose/rose_0003.jpg", "tulip/tulip_0002.jpg"):  # two AppTests: two sessions
        at = open_page("pages/4_Classify.py")
        upload = (Path(photo).name, (synthetic / photo).read_bytes(), "image/jpeg")
        at.file_uploader(key="classify_upload").set_value(upload).run()
        assert_clean(at)
        assert "Prediction" in [m.label for m in at.metric]
    assert len(loaded) == 1


def test_a_huge_photo_is_downscaled_before_it_is_predicted_explained_or_cached(
    synthetic, app_runs, monkeypatch
):
    from PIL import Image

    from flower_core.data.images import HELD_PHOTO_SIDE
    from ui import loaders

    sizes = []
    for name in ("predict", "explain"):
        cached = getattr(loaders, name)

        def seen(run_dir, stamp, image, *args, _cached=cached, **kwargs):
            sizes.append(Image.open(io.BytesIO(image)).size)
            return _cached(run_dir, stamp, image, *args, **kwargs)

        monkeypatch.setattr(loaders, name, seen)
    huge = Image.new("RGB", (2 * HELD_PHOTO_SIDE + 100, HELD_PHOTO_SIDE + 100), (200, 40, 40))
    buffer = io.BytesIO()
    huge.save(buffer, "PNG")
    at = open_page("pages/4_Classify.py")
    at.file_uploader(key="classify_upload").set_value(("huge.png", buffer.getvalue(), "image/png"))
    at.run()
    assert_clean(at)
    assert "Prediction" in [m.label for m in at.metric] and len(sizes) >= 2
    assert all(max(size) <= HELD_PHOTO_SIDE for size in sizes), sizes


def test_classify_takes_a_webcam_photo(synthetic, app_runs):
    from PIL import Image

    at = open_page("pages/4_Classify.py")
    at.segmented_control(key="classify_source").set_value("Webcam").run()
    assert_clean(at)
    assert not [m for m in at.metric if m.label == "Prediction"]  # nothing before the shot
    shot = io.BytesIO()
    Image.open(synthetic / "daisy" / "daisy_0001.jpg").resize((640, 480)).save(shot, "JPEG")
    at.camera_input(key="classify_camera").set_value(("webcam.jpg", shot.getvalue(), "image/jpeg")).run()
    assert_clean(at)
    assert "Prediction" in [m.label for m in at.metric]


def test_classify_tables_several_photos_and_explains_one_with_two_runs(synthetic, app_runs):
    at = open_page("pages/4_Classify.py")
    photos = [
        (f"{name}.jpg", (synthetic / name / f"{name}_0001.jpg").read_bytes(), "image/jpeg")
        for name in ("daisy", "tulip")
    ]
    at.file_uploader(key="classify_upload").set_value(photos).run()
    assert list(at.dataframe[0].value["path"]) == ["daisy.jpg", "tulip.jpg"]
    at.selectbox(key="classify_pick").set_value("tulip.jpg")
    at.session_state["classify_tab"] = ":material/compare: Side by side"
    at.run()
    assert_clean(at)
    assert len(at.multiselect(key="classify_runs").value) == 2
    assert len(at.get("imgs")) + len(at.get("image")) >= 2


def test_classify_says_in_one_line_when_an_upload_is_not_a_photo(synthetic, app_runs):
    at = open_page("pages/4_Classify.py")
    at.file_uploader(key="classify_upload").set_value(("notes.png", b"not a photo", "image/png"))
    at.run()
    assert not at.exception
    assert "Cannot classify notes.png" in texts(at.error) and "\n" not in texts(at.error)


@pytest.fixture
def upload_limit_1mb():
    """`server.maxUploadSize` of 1 MB, as if set in `.streamlit/config.toml`."""
    from streamlit import config

    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    yield
    config.set_option("server.maxUploadSize", before)


def test_classify_refuses_a_photo_over_the_limit_and_keeps_the_others(synthetic, app_runs, upload_limit_1mb):
    at = open_page("pages/4_Classify.py")
    photo = (synthetic / "rose" / "rose_0003.jpg").read_bytes()
    big = ("big.jpg", photo + os.urandom(1_100_000), "image/jpeg")
    at.file_uploader(key="classify_upload").set_value([big, ("rose.jpg", photo, "image/jpeg")]).run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("Upload refused: big.jpg is 1.1 MB, over the limit of 1 MB per file")
    assert "Prediction" in [m.label for m in at.metric]


def test_classify_refuses_photos_whose_total_is_over_the_limit(synthetic, app_runs, upload_limit_1mb):
    at = open_page("pages/4_Classify.py")
    photo = (synthetic / "rose" / "rose_0003.jpg").read_bytes() + bytes(600_000)
    at.file_uploader(key="classify_upload").set_value(
        [(f"rose{i}.jpg", photo, "image/jpeg") for i in range(2)]
    ).run()
    assert not at.exception
    assert "2 files of 1.2 MB in all, over the limit of 1 MB at once" in texts(at.error)
    assert "Prediction" not in [m.label for m in at.metric] and not at.dataframe


def test_home_refuses_a_zip_over_the_upload_limit(synthetic, tmp_path, upload_limit_1mb):
    at = open_page()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flowers/rose/big.jpg", os.urandom(1_200_000))
    at.file_uploader(key="home_zip").set_value(("big.zip", buffer.getvalue(), "application/zip"))
    at.run()
    assert "The archive was refused: big.zip is 1.1 MB, over the limit of 1 MB" in texts(at.error)
    assert "home_unzip" not in [button.key for button in at.button]
    assert "home_synth" in [button.key for button in at.button], "the other tabs must stay usable"


def test_classify_shows_the_mistakes_of_a_confusion_cell(synthetic, app_runs):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["classify_tab"] = ":material/report: Mistakes"
    at.run().switch_page("pages/4_Classify.py").run()
    assert_clean(at)
    assert at.selectbox(key="classify_cell").options
    assert len(at.get("imgs")) + len(at.get("image")) >= 1


def test_compare_filters_tags_and_deletes_runs(synthetic, app_runs):
    at = open_page("pages/3_Compare.py")
    at.multiselect(key="compare_state").set_value(["failed"]).run()
    assert len(at.dataframe[0].value) == 1
    at.multiselect(key="compare_state").set_value([]).run()
    run_id = at.selectbox(key="compare_manage").value
    at.text_input(key=f"compare_tags_{run_id}").set_value("best, mobile").run()
    at.button(key="compare_save").click().run()
    assert json.loads((app_runs / run_id / "meta.json").read_text())["tags"] == ["best", "mobile"]
    at.checkbox(key=f"compare_confirm_{run_id}").check().run()
    at.button(key="compare_delete").click().run()
    assert_clean(at)
    assert not (app_runs / run_id).exists()


def test_compare_shows_the_compact_columns_and_more_on_request(synthetic, app_runs):
    from ui.compare_view import COLUMN_CONFIG

    assert list(COLUMN_CONFIG) == list(TABLE_COLUMNS)  # every column has its label and width
    at = open_page("pages/3_Compare.py")
    assert list(at.dataframe[0].proto.column_order) == list(COMPACT_COLUMNS)
    assert at.dataframe[0].value["started"].notna().sum() == 2  # the two finished runs' dates
    at.multiselect(key="compare_more_columns").set_value(["run_id", "seconds"]).run()
    assert_clean(at)
    assert list(at.dataframe[0].proto.column_order) == [*COMPACT_COLUMNS, "seconds", "run_id"]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_memory_stays_flat_over_50_predictions(synthetic, app_runs):
    at = open_page("pages/4_Classify.py")
    photos = sorted(synthetic.glob("*/*.jpg"))
    uploader = "classify_upload"

    def classify(i: int) -> None:
        photo = (f"photo{i}.jpg", photos[i % len(photos)].read_bytes(), "image/jpeg")
        at.file_uploader(key=uploader).set_value(photo).run()

    for i in range(5):  # warm-up: the model, TensorFlow's graphs and the caches fill up
        classify(i)
    before = _rss_mb()
    for i in range(5, 55):
        classify(i)
    assert_clean(at)
    assert "Prediction" in [m.label for m in at.metric]
    growth = _rss_mb() - before
    assert growth < 40, f"memory grew by {growth:.0f} MB over 50 predictions"


def test_train_page_shows_the_feature_cache_and_clears_it(synthetic):
    import numpy as np

    from flower_core.models.features import FeatureCache

    cache = FeatureCache()
    cache.get_or_build(
        "demo",
        lambda path: np.save(path, np.ones((10, 4), "float32")),
        {"backbone": "mobilenet", "image_size": 64, "photos": 10, "kind": "clean", "preprocessing": "tf"},
    )
    at = open_page("pages/2_Train.py")
    assert any("Feature cache: 1 entries" in e.label for e in at.expander)
    at.button(key="train_cache_clear").click().run()
    assert cache.entries() == [] and any("Feature cache: 0 entries" in e.label for e in at.expander)


@pytest.mark.parametrize("page", [None, *PAGES])
def test_pages_survive_a_run_whose_files_are_corrupt(synthetic, app_runs, page):
    """A half-copied or hand-edited run folder shows as corrupt; it never breaks a page."""
    broken = app_runs / "20260101-000300-base-mobilenet-dddd"
    broken.mkdir()
    for name, content in (
        ("config.json", b"{"),
        ("status.json", b"[1, 2]"),
        ("metrics.json", b"\xff\xfe"),
        ("history.jsonl", b'{"epoch": 1, "lo'),
    ):
        (broken / name).write_bytes(content)
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    if page == "pages/2_Train.py":  # it follows the newest run it can read
        assert "Run `20260101-000200-batchnorm-vgg16-cccc`" in texts(at.caption)
        assert broken.name not in texts(at.error) + texts(at.caption)
    if page == "pages/3_Compare.py":
        assert f"`{broken.name}`: corrupt run file" in texts(at.warning)
        at.button(key=f"compare_drop_{broken.name}").click().run()
        assert not broken.exists() and not at.exception
        assert (app_runs / "20260101-000000-base-mobilenet-aaaa").is_dir()


def test_a_failed_run_says_why_in_one_line_and_where_its_traceback_is(synthetic, app_runs):
    failed = app_runs / "20260101-000200-batchnorm-vgg16-cccc"
    (failed / "run.log").write_text("Traceback (most recent call last):\n  ...\nFlowerError: ...\n")
    at = open_page("pages/2_Train.py", errors=True)
    assert texts(at.error) == (
        "Training failed: ImageNet weights for backbone 'vgg16' could not be loaded "
        f"(the traceback is in {failed / 'run.log'})"
    )


def _plant_finished_run(app_runs: Path, name: str, **files: str) -> Path:
    """A finished ImageNet MobileNet run (its history read by the Train page's time estimate)
    whose files hold `files` as text."""
    run_dir = app_runs / f"20260101-0005{len(list(app_runs.iterdir())):02d}-{name}"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps({"preset": "base", "backbone": "mobilenet", "weights": "imagenet", "epochs": 2})
    )
    (run_dir / "facts.json").write_text(json.dumps({"class_names": ["a", "b"], "split_sizes": {"train": 90}}))
    (run_dir / "status.json").write_text(json.dumps({"state": "done", "message": "finished"}))
    for file_name, text in files.items():
        (run_dir / file_name).write_text(text)
    return run_dir


@pytest.mark.parametrize("seconds", ['"z"', "NaN"])
def test_train_page_survives_an_epoch_line_of_the_wrong_type(synthetic, app_runs, seconds):
    history = '{"epoch": 1, "loss": 0.9, "accuracy": 0.5, "seconds": 1.0}\n' + (
        f'{{"epoch": 2, "loss": 0.8, "accuracy": 0.6, "seconds": {seconds}}}\n'
    )
    run_dir = _plant_finished_run(app_runs, "base-mobilenet-eeee", **{"history.jsonl": history})
    at = open_page("pages/2_Train.py")
    assert [c.value for c in at.caption if "With the preset's settings, about" in c.value]
    assert f"Run `{run_dir.name}`" in texts(at.caption) and "epoch   2" not in texts(at.code)


def test_compare_page_survives_a_test_accuracy_that_is_not_a_number(synthetic, app_runs):
    # With the finished `base` run of app_runs, two runs of one study step: a mean and an sd.
    metrics = {"metrics.json": '{"test_accuracy": NaN}'}
    run_dir = _plant_finished_run(app_runs, "base-mobilenet-ffff", **metrics)
    at = open_page("pages/3_Compare.py")
    assert f"`{run_dir.name}`: corrupt run file" in texts(at.warning)
    assert "'test_accuracy' should be a finite number" in texts(at.warning)


def test_train_says_in_one_line_when_a_finished_runs_metrics_are_corrupt(synthetic, app_runs):
    run_id = "20260101-000100-dropout20-mobilenet-bbbb"
    (app_runs / run_id / "metrics.json").write_text("[1]")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["train_run"] = run_id
    at.run().switch_page("pages/2_Train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert texts(at.error).startswith(f"Cannot show run {run_id}: corrupt run file")


def _export_on_compare(run_id: str) -> AppTest:
    at = open_page("pages/3_Compare.py")
    at.selectbox(key="compare_manage").set_value(run_id).run()
    at.button(key="compare_export_button").click().run()
    return at


def test_an_export_refused_is_one_line_and_leaves_no_progress_bar(synthetic, app_runs):
    run_id = "20260101-000100-dropout20-mobilenet-bbbb"
    (app_runs / run_id / "model.keras").write_bytes(b"not a model")
    at = _export_on_compare(run_id)
    assert not at.exception, [e.message for e in at.exception]
    (error,) = [e.value for e in at.error]
    assert error.startswith("Cannot export the run: not a Keras model file") and "\n" not in error
    assert not at.get("progress"), "the export's progress bar stayed after it failed"


def test_an_export_fault_is_one_line_that_says_where_its_traceback_is(synthetic, app_runs, caplog, tmp_path):
    """A run whose split.json lists a test photo of a class it never learned (hand-edited) breaks
    the export with a ValueError, not a refusal: the page says so in one line, and the server's
    log keeps the traceback."""
    import shutil

    run_id = "20260101-000100-dropout20-mobilenet-bbbb"
    run_dir = app_runs / run_id
    data = tmp_path / "flowers"
    shutil.copytree(json.loads((run_dir / "config.json").read_text())["data_root"], data)
    (data / "iris").mkdir()
    shutil.copy(next((data / "daisy").iterdir()), data / "iris" / "iris_0.jpg")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "data_root": str(data)}))
    split = json.loads((run_dir / "split.json").read_text())
    (run_dir / "split.json").write_text(json.dumps({**split, "test": [*split["test"], "iris/iris_0.jpg"]}))
    at = _export_on_compare(run_id)
    assert not at.exception, [e.message for e in at.exception]
    (error,) = [e.value for e in at.error]
    assert error == (
        "Cannot export the run: ValueError: 'iris' is not in list (the traceback is in the server's log)"
    )
    assert not at.get("progress"), "the export's progress bar stayed after it failed"
    logged = [r for r in caplog.records if r.getMessage().startswith("Cannot export the run")]
    assert logged and logged[-1].exc_info, "the traceback behind the one line was not logged"


def test_classify_tables_a_zip_of_photos_with_top_classes_and_the_unsure_flag_as_csv(synthetic, app_runs):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("daisy", "rose", "tulip"):
            archive.write(synthetic / name / f"{name}_0001.jpg", f"trip/{name}.jpg")
        archive.writestr("trip/readme.txt", "not a photo")
    at = open_page("pages/4_Classify.py")
    at.file_uploader(key="classify_upload").set_value(
        ("trip.zip", buffer.getvalue(), "application/zip")
    ).run()
    assert_clean(at)
    [table] = [frame.value for frame in at.dataframe if "path" in frame.value.columns]
    assert list(table["path"]) == ["trip/daisy.jpg", "trip/rose.jpg", "trip/tulip.jpg"]
    assert {"predicted_class", "probability", "low_confidence", "top_k"} <= set(table.columns)
    assert table["top_k"].str.count(",").min() >= 2, "the top classes, not only the first"
    [download] = at.get("download_button")
    assert download.proto.label == "Download as CSV"
    assert "3 photos" in texts(at.markdown)


def test_a_click_on_a_confusion_cell_opens_its_photos(synthetic, app_runs):
    from flower_core.store.runs import Run

    run = Run.open(app_runs / "20260101-000100-dropout20-mobilenet-bbbb")
    cells = run.metrics.confused_cells()
    true_name, predicted, count = cells[-1]  # not the cell shown first
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["classify_tab"] = ":material/report: Mistakes"
    at.session_state["classify_run"] = run.id
    at.run().switch_page("pages/4_Classify.py").run()
    assert at.selectbox(key="classify_cell").value != f"{true_name} taken for {predicted} ({count})"
    click = {
        "selection": {
            "points": [{"x": predicted, "y": true_name}],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }
    at.session_state["classify_confusion"] = click
    at.run()
    assert_clean(at)
    assert at.selectbox(key="classify_cell").value == f"{true_name} taken for {predicted} ({count})"


def _click(true_name: str, predicted: str) -> dict:
    """A plotly chart's selection event for a click on the confusion cell (true, predicted)."""
    return {
        "selection": {
            "points": [{"x": predicted, "y": true_name}],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }


def test_a_click_on_a_compare_confusion_cell_lists_its_photos_under_their_heatmaps(synthetic, app_runs):
    from ui.classify_view import MISTAKES_SHOWN
    from ui.common import short_name

    run = Run.open(app_runs / "20260101-000100-dropout20-mobilenet-bbbb")
    true_name, predicted, count = run.metrics.confused_cells()[-1]
    at = open_page("pages/3_Compare.py")
    assert not at.get("image")
    at.session_state[f"compare_cm_{run.id}"] = _click(true_name, predicted)
    at.run()
    assert_clean(at)
    assert f"{true_name} photos predicted as {predicted}" in texts(at.markdown)
    captions = [caption for image in at.get("image") for caption in image.captions]
    wrong = run.metrics.mistakes(true_name, predicted)[:MISTAKES_SHOWN]
    assert len(captions) == len(wrong) == min(count, MISTAKES_SHOWN)
    assert sorted(c.split(":")[0] for c in captions) == sorted(short_name(m.path) for m in wrong)
    hits = {name: run.metrics.confusion[i][i] for i, name in enumerate(run.metrics.class_names)}
    name = max(hits, key=hits.get)
    at.session_state[f"compare_cm_{run.id}"] = _click(name, name)  # on the diagonal: the photos it got right
    at.run()
    assert_clean(at)
    captions = sorted(caption for image in at.get("image") for caption in image.captions)
    right = run.metrics.right(name, json.loads((run.path / "split.json").read_text())["test"])
    assert len(right) == hits[name] > 0
    assert captions == sorted(f"{short_name(path)}: right" for path in right[:MISTAKES_SHOWN])


def test_compare_shows_a_run_trained_again_beside_the_run_it_repeats(synthetic, app_runs):
    from flower_core.evaluation.uncertainty import interval_text

    before, after = (app_runs / f"20260101-000{i}00-{name}" for i, name in enumerate(RUN_NAMES))
    at = open_page("pages/3_Compare.py")
    assert "Before and after cleaning" not in texts(at.subheader)
    config = json.loads((after / "config.json").read_text())
    (after / "config.json").write_text(json.dumps({**config, "repeats": before.name}))  # as retrain writes it
    metrics = json.loads((before / "metrics.json").read_text())
    (before / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 0.5}))
    st.cache_data.clear()
    at.run()
    assert_clean(at)
    assert "Before and after cleaning" in texts(at.subheader)
    shown = {metric.label: (metric.value, metric.proto.delta) for metric in at.metric}
    photos = Run.open(after).metrics.num_files
    assert shown["Before"] == ("50.0%", interval_text(0.5, photos))
    assert shown["After"] == ("20.0%", interval_text(0.2, photos))
    assert shown["Change"] == ("-30.0 points", "beyond noise")  # 20 photos each, yet beyond it
