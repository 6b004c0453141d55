"""The whole product in a real browser: Chromium, driven by Playwright, against
`streamlit run app.py` on localhost, on a synthetic dataset made for the test.

It opens every page, trains a one-epoch model from the Train page and watches it finish, then
uploads a photo and sees a prediction and a heatmap. A screenshot of each page is saved under
`artifacts/screenshots/` (git-ignored) to be looked at by a person.
"""

import re
from pathlib import Path

import pytest

from tests.browser import (
    PAGES,
    ROOT,
    choose,
    needs_chromium,
    page_on_home,
    settle,
    streamlit_server,
)

SHOTS = ROOT / "artifacts" / "screenshots"
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run app.py` over a fresh synthetic dataset and runs folder; yields the app's
    URL and the dataset's folder."""
    from flower_core.data.synthetic import generate

    work = tmp_path_factory.mktemp("e2e")
    generate(work / "flowers", per_class=20, size=96, seed=0)
    with streamlit_server(work) as (url, _):
        yield url, work / "flowers"


@pytest.fixture(scope="module")
def browser_page(server):
    with page_on_home(server[0]) as page:
        yield page


def screenshot(page, name: str) -> Path:
    """A screenshot of the whole page (Streamlit scrolls inside its own container)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    settle(page, 0.5)
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('section, main, div')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1440, "height": min(max(int(height), 900), 6000)})
    settle(page, 1.5)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    return path


def open_page(page, key: str) -> None:
    page.get_by_test_id("stSidebar").get_by_role("link", name=PAGES[key], exact=True).click()
    heading = "Flower Studio" if key == "home" else PAGES[key]
    page.get_by_role("heading", name=heading).first.wait_for()
    settle(page)


def test_every_page_opens_on_the_synthetic_set(browser_page):
    page = browser_page
    for key in PAGES:
        open_page(page, key)
        assert not page.get_by_test_id("stException").count()
        screenshot(page, f"{list(PAGES).index(key) + 1}-{key}-before-training")
    open_page(page, "dataset")
    page.get_by_role("tab", name="Explore").click()
    page.get_by_role("tab", name="Samples").click()
    page.get_by_role("tab", name="Samples").wait_for()
    settle(page)
    assert page.locator("[data-testid=stImage] img").count() >= 5
    screenshot(page, "2-dataset-samples")


def test_train_one_epoch_then_classify_and_explain_an_upload(browser_page, server):
    page = browser_page
    open_page(page, "train")
    choose(page, "train_best_backbone", "mobilenet")
    choose(page, "train_best_weights", "none (train from scratch)")
    slider = page.locator(".st-key-train_best_image_size input[type=range]")
    slider.press("Home")
    slider.press("ArrowRight")
    epochs = page.locator(".st-key-train_best_epochs input")
    epochs.fill("1")
    epochs.press("Tab")
    page.locator(".st-key-train_submit button").click()
    page.get_by_text("Epoch 0 of 1 done").wait_for(timeout=180_000)  # a new worker imports TensorFlow first
    page.wait_for_function(
        "() => /checking photos|Batch \\d+ of|Test accuracy/.test(document.body.innerText)",
        timeout=120_000,
    )
    page.wait_for_timeout(2500)
    screenshot(page, "3-train-running")
    page.get_by_test_id("stMetricLabel").get_by_text("Test accuracy").wait_for(timeout=300_000)
    settle(page, 2)
    screenshot(page, "3-train-finished")
    assert page.get_by_test_id("stMetricValue").first.inner_text().endswith("%")

    open_page(page, "compare")
    assert page.get_by_text("Selected runs").is_visible()
    screenshot(page, "4-compare")

    open_page(page, "classify")
    photo = server[1] / "rose" / "rose_0001.jpg"
    page.locator(".st-key-classify_upload input[type=file]").set_input_files(str(photo))
    page.get_by_text("What the model sees").wait_for(timeout=120_000)
    settle(page, 2)
    assert page.get_by_test_id("stMetric").filter(has_text="Prediction").count() == 1
    assert page.locator("[data-testid=stImage] img").count() >= 2
    screenshot(page, "5-classify")


def test_the_default_recipe_trains_and_exports_from_its_buttons(browser_page, tmp_path):
    """The app's defaults untouched (the `best` preset on the backbone the form opens on, ready with
    no download): Train, then Export, and the zip holds every format and a card that names the
    weights' origin and licence."""
    import json
    import zipfile

    from flower_core.config import SUGGESTED_PRESET, make_config
    from flower_core.models.backbone_specs import BACKBONES

    page = browser_page
    open_page(page, "train")
    backbone = make_config(SUGGESTED_PRESET).backbone
    opened = page.locator(f".st-key-train_{SUGGESTED_PRESET}_backbone input").input_value()
    assert opened.startswith(backbone), opened
    page.locator(".st-key-train_submit button").click()
    page.get_by_test_id("stMetricLabel").get_by_text("Test accuracy").wait_for(timeout=600_000)
    settle(page, 1)
    page.get_by_role("button", name=re.compile("^Export")).click()
    download_button = page.get_by_role("button", name="Download the export (.zip)")
    download_button.wait_for(timeout=600_000)
    assert not page.get_by_test_id("stException").count()
    screenshot(page, "3-train-exported")
    with page.expect_download() as download:
        download_button.click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as files:
        names = {Path(name).name for name in files.namelist()}
        card = json.loads(files.read(next(n for n in files.namelist() if n.endswith("model_card.json"))))
    assert {"model.onnx", "model_card.md", "labels.txt", "saved_model.pb"} <= names
    assert set(card["formats"]) | set(card.get("skipped", {})) >= {"saved_model", "onnx"}
    spec = BACKBONES[backbone]
    assert (card["backbone"], card["origin"], card["licence"]) == (
        backbone,
        spec.weights_origin,
        spec.licence,
    )
