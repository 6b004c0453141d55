"""The study button in a real browser: Chromium, driven by Playwright, against
`streamlit run app.py`: queue the study from the Train page, see it on the Compare page with
our cells saying queued or training, then cancel it there (so no worker outlives the test)."""

import pytest

from flower_core.groups import group as groups
from flower_core.store.runs import ACTIVE_STATES, peek_status
from tests.browser import choose, needs_chromium, page_on_home, settle, streamlit_server

from .conftest import wait_until
from .test_e2e_browser import open_page, screenshot

pytestmark = needs_chromium


@pytest.fixture
def page_and_runs(tmp_path):
    from flower_core.data.synthetic import generate

    generate(tmp_path / "flowers", per_class=8, size=48, seed=0)
    with streamlit_server(tmp_path) as (url, _), page_on_home(url) as page:
        try:
            yield page, tmp_path / "runs"
        finally:
            for record in groups.list_groups(tmp_path / "runs"):
                groups.cancel_group(tmp_path / "runs", record["id"])


def test_the_study_button_queues_the_study_and_compare_shows_it(page_and_runs):
    page, runs = page_and_runs
    open_page(page, "train")
    page.get_by_text("Run the whole study").click(timeout=180_000)  # the first render imports TensorFlow
    settle(page, 0.5)  # a click while the expander is still opening does not open the list
    choose(page, "study_backbone", "mobilenet")
    choose(page, "study_weights", "none (train from scratch)")
    choose(page, "study_size", "32")
    settle(page)
    page.get_by_text("7 runs, about").wait_for()
    page.locator(".st-key-study_start button").click()
    page.get_by_text("Queued study-").wait_for()
    [record] = groups.list_groups(runs)
    assert len(record["runs"]) == 7

    open_page(page, "compare")
    page.get_by_role("heading", name="The study against our runs").wait_for()
    settle(page, 2)
    screenshot(page, "6-compare-study-queued")
    picked = page.locator(".st-key-compare_study_pick input").input_value()
    assert picked == f"{record['id']} (7 runs)"
    page.locator(".st-key-compare_study_cancel button").click()
    settle(page)
    run_dirs = groups.group_run_dirs(runs, record["id"])
    wait_until(lambda: all(peek_status(d).state not in ACTIVE_STATES for d in run_dirs), timeout=120)
    assert {peek_status(d).state for d in run_dirs} <= {"cancelled", "done"}
