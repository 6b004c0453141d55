"""The Train form in a real browser (Chromium, driven by Playwright): its settings are
plain widgets, so the augmentation preview follows a slider as it moves, before Train is
pressed; and a double-click on Train still queues one run, however late its second click
arrives, as long as the page did not rerun in between (`ui.live.new_submission`)."""

import pytest

from flower_core.store.runs import ACTIVE_STATES, RunStore, peek_status
from flower_core.training import jobs
from tests.browser import choose, needs_chromium, page_on_home, settle, streamlit_server

from .conftest import wait_until
from .test_e2e_browser import open_page

pytestmark = needs_chromium


@pytest.fixture
def page_and_runs(tmp_path):
    from flower_core.data.synthetic import generate

    generate(tmp_path / "flowers", per_class=4, size=48, seed=0)
    runs = tmp_path / "runs"
    with streamlit_server(tmp_path) as (url, _), page_on_home(url) as page:
        try:
            yield page, runs
        finally:
            for run_dir in RunStore(runs).run_dirs():  # no worker outlives the test
                jobs.cancel(run_dir)
            wait_until(
                lambda: all(peek_status(d).state not in ACTIVE_STATES for d in RunStore(runs).run_dirs()),
                timeout=180,
            )


def test_the_preview_follows_the_slider_and_a_double_click_queues_one_run(page_and_runs):
    page, runs = page_and_runs
    open_page(page, "train")
    choose(page, "train_preset", "dropout20")  # augmentation on
    settle(page)
    choose(page, "train_dropout20_backbone", "mobilenet")
    choose(page, "train_dropout20_weights", "none (train from scratch)")
    settle(page)
    page.get_by_text("Augmentation preview").click()
    page.get_by_text("at 224 px, seed 0:").wait_for()
    page.locator(".st-key-train_dropout20_image_size input[type=range]").press("Home")
    page.get_by_text("at 32 px, seed 0:").wait_for()  # no press of Train
    settle(page)
    assert not RunStore(runs).run_dirs()
    train = page.locator(".st-key-train_submit button")
    train.dblclick()
    wait_until(lambda: RunStore(runs).run_dirs(), timeout=60)
    train.click()  # a second click that arrives once the first queued its run: the same submission
    settle(page, 3)
    assert len(RunStore(runs).run_dirs()) == 1, [d.name for d in RunStore(runs).run_dirs()]
