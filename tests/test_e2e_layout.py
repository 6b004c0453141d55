"""The layout points a newcomer tripped on, in a real browser at the app's usual width (1440 px):
no select's value cut off on the Train page (form, study, sweep), log lines wrapped, the
augmentation preview offered while augmentation is off; and the Compare page redrawing, without
a reload, as a run finishes. Screenshots go to `artifacts/screenshots/` (git-ignored)."""

import os

from flower_core.config import make_config
from flower_core.store.runs import METRICS, STATUS, RunStore, process_start, write_json
from tests.browser import needs_chromium, page_on_home, settle, streamlit_server

from .test_e2e_browser import open_page, screenshot

pytestmark = needs_chromium
# Every value a select shows (a selectbox's input, a multiselect's chips) that is wider than its
# box, its end hidden; and how many were checked, so that markup the query no longer finds fails
# the test instead of passing it (Streamlit's selects stopped being `[data-baseweb=select]`).
CLIPPED_SELECTS = """() => {
    const shown = [...document.querySelectorAll(
        '[data-testid=stSelectbox] input[role=combobox], [data-testid=stMultiSelect] [data-tag] > span')];
    return {checked: shown.length,
            clipped: shown.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.value ?? e.textContent)};
}"""
# How many code blocks (the log) there are, and how many have lines that reach past its right edge.
CUT_LOGS = """() => {
    const logs = [...document.querySelectorAll('[data-testid=stCode] pre')];
    return {checked: logs.length, cut: logs.filter(e => e.scrollWidth > e.clientWidth + 1).length};
}"""


def _failed_run(root) -> None:
    """A failed run whose log line is far wider than the Job column."""
    run_dir = RunStore(root).create({**make_config("base").to_json(), "data_root": None}, "base", "vgg16")
    message = "a very long line that no column holds: " + " ".join(f"word{i}" for i in range(60))
    write_json(run_dir / STATUS, {"state": "failed", "message": message})


def test_the_train_page_fits_1440_px(tmp_path):
    from flower_core.data.synthetic import generate

    generate(tmp_path / "flowers", per_class=6, size=48, seed=0)
    _failed_run(tmp_path / "runs")
    with streamlit_server(tmp_path) as (url, _), page_on_home(url) as page:
        open_page(page, "train")
        page.get_by_text("Run the whole study").click()
        page.get_by_text("Sweep settings").click()
        page.get_by_text("Advanced", exact=True).click()
        settle(page, 1.5)
        screenshot(page, "layout-train")
        selects = page.evaluate(CLIPPED_SELECTS)
        assert selects["checked"] >= 12 and selects["clipped"] == [], selects
        logs = page.evaluate(CUT_LOGS)
        assert logs == {"checked": 1, "cut": 0}, f"a log line is cut off on the right: {logs}"
        page.locator(".st-key-train_preset [role=combobox]").click()
        page.get_by_role("option", name="base", exact=True).click()
        settle(page)
        page.get_by_text("Augmentation preview (augmentation is off)").click()
        page.get_by_text("Augmentation is off: training sees each photo as it is.").wait_for()
        screenshot(page, "layout-train-preview-off")


def test_compare_redraws_as_a_run_finishes_without_a_reload(tmp_path):
    from flower_core.data.synthetic import generate

    generate(tmp_path / "flowers", per_class=4, size=32, seed=0)
    store = RunStore(tmp_path / "runs")
    run_dir = store.create({**make_config("base").to_json(), "data_root": None}, "base", "mobilenet")
    pid = os.getpid()  # a live process stands in for the trainer
    running = {"state": "running", "pid": pid, "pid_start": process_start(pid), "host": os.uname().nodename}
    write_json(run_dir / STATUS, running)
    with streamlit_server(tmp_path) as (url, _), page_on_home(url) as page:
        open_page(page, "compare")
        page.get_by_text("1 training, 0 queued").wait_for()
        page.evaluate("() => { window.notReloaded = true; }")
        write_json(run_dir / METRICS, {"test_accuracy": 0.5, "test_loss": 1.0})
        write_json(run_dir / STATUS, {"state": "done"})
        page.get_by_text("1 training, 0 queued").wait_for(state="detached", timeout=30_000)
        assert page.evaluate("() => window.notReloaded === true")
