"""The Dataset page in a real browser: a dataset made from uploads (three classes) and a burst of
Chromium's fake webcam (a fourth), audited, a planted label error fixed from the review queue (the page
staying on its tab), undone, and a point of the embedding map opened in the review."""

import re
import shutil

import pytest

from flower_core.data import fixes
from tests.browser import BUSY, CHROMIUM, LAUNCH_ARGS, PAGES, choose, needs_chromium, settle, streamlit_server
from tests.conftest import wait_until

pytestmark = [*needs_chromium, pytest.mark.slow]
# Chromium's own test camera, allowed without asking: the burst component gets its frames.
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PER_CLASS = 12
BURST = 10  # the burst's default frame count


def fill(page, key: str, text: str) -> None:
    field = page.locator(f".st-key-{key} input")
    field.fill(text)
    field.press("Enter")
    settle(page)


def only(page, key: str):
    """The button of `key` once the page shows one: during a rerun the old one may still be drawn
    beside the new one, and a click on the old one is lost."""
    page.wait_for_function(
        f"() => document.querySelectorAll('.st-key-{key} button').length === 1"
        f" && !document.querySelector('{BUSY}')",
        timeout=300_000,
    )
    return page.locator(f".st-key-{key} button")


def click(page, key: str) -> None:
    only(page, key).click()
    settle(page)


def test_build_audit_fix_and_undo_in_the_browser(tmp_path, synthetic_dataset):
    from playwright.sync_api import sync_playwright

    photos = tmp_path / "photos"
    for name in ("daisy", "rose", "tulip"):
        (photos / name).mkdir(parents=True)
        for source in sorted((synthetic_dataset / name).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(source, photos / name / source.name)
    shutil.move(photos / "daisy" / "daisy_0005.jpg", photos / "tulip" / "daisy_0005.jpg")  # the planted error
    root = tmp_path / "data" / "uploads" / "garden"
    with streamlit_server(tmp_path) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS + FAKE_CAMERA)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_role("link", name=PAGES["dataset"], exact=True).click()
        page.get_by_role("heading", name="Dataset").first.wait_for()
        settle(page)

        fill(page, "dataset_new_name", "garden")
        click(page, "dataset_create")
        page.get_by_text("Created garden").wait_for()
        for name in ("daisy", "rose", "tulip", "meadow"):
            for _ in range(3):  # under load a click may land in the rerun of the typing, and be lost
                fill(page, "dataset_class_new", name)
                click(page, "dataset_class_add")
                if (root / name).is_dir():
                    break
            assert (root / name).is_dir()
        for i, name in enumerate(("daisy", "rose", "tulip")):
            choose(page, "dataset_add_class", name)
            files = [str(p) for p in sorted((photos / name).iterdir())]
            uploader = "dataset_add_files" + (f"_{i}" if i else "")  # a new, empty uploader each time
            page.locator(f".st-key-{uploader} input[type=file]").set_input_files(files)
            page.locator(".st-key-dataset_add_files_go button").wait_for()
            click(page, "dataset_add_files_go")
            page.get_by_text(f"Added {len(files)} photo(s) to {name}").wait_for()
        assert not page.get_by_test_id("stException").count()

        # The burst fills a class of its own: frames of the fake camera among the flowers would
        # be near duplicates of one another and move the audit's heads.
        choose(page, "dataset_add_class", "meadow")
        page.get_by_role("tab", name="Webcam").first.click()
        settle(page)
        camera = page.frame_locator("iframe[src*='webcam_burst']")
        camera.get_by_role("button", name=f"Hold or click: {BURST} photo(s) of a meadow").click()
        camera.get_by_text(f"Captured {BURST} / {BURST}").or_(camera.get_by_text("Sent")).first.wait_for()
        wait_until(lambda: len(list((root / "meadow").iterdir())) == BURST, timeout=120)
        page.get_by_text(f"Added {BURST} photo(s) to meadow").wait_for()
        assert len(list((root / "meadow").glob("webcam-meadow*.jpg"))) == BURST

        page.get_by_role("tab", name="Audit & review").first.click()
        fill(page, "dataset_audit_size", "96")
        click(page, "dataset_audit_go")
        page.get_by_text(re.compile(r"Review · \d+ left")).wait_for(timeout=300_000)
        for _ in range(3):  # down the queue, keeping the labels of suspects before the planted one
            if page.get_by_text("tulip/daisy_0005.jpg", exact=True).count():
                break
            click(page, "dataset_keep")
        assert page.get_by_text("tulip/daisy_0005.jpg", exact=True).count()
        move = only(page, "dataset_move")
        assert "Move to daisy" in move.inner_text()
        move.click()
        wait_until(lambda: (root / "daisy" / "daisy_0005.jpg").is_file(), timeout=120)
        settle(page)
        assert fixes.journal(root)[-1]["action"] == "move"

        audit_tab = page.get_by_role("tab", name="Audit & review").first
        assert audit_tab.get_attribute("aria-selected") == "true"  # the fix left the person here
        click(page, "dataset_undo")
        page.get_by_text("Undone: move tulip/daisy_0005.jpg").wait_for()
        assert (root / "tulip" / "daisy_0005.jpg").is_file()
        assert audit_tab.get_attribute("aria-selected") == "true"

        # A click on a point of the embedding map shows its photo and opens it in the review.
        point = page.locator(".js-plotly-plot .scatterlayer path.point").first
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        settle(page)
        opened = page.get_by_text(re.compile(r": open in the review above$")).first
        opened.wait_for()
        path = opened.inner_text().removesuffix(": open in the review above")
        assert page.get_by_text(path, exact=True).count()  # the review's caption
        assert not page.get_by_test_id("stException").count()
        browser.close()
