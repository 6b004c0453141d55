"""The Compare page in a real browser (Chromium, driven by Playwright) at a 1400 x 900 laptop
window: the runs table's default columns fit with no sideways scroll (and the same check sees the
scroll in a narrower window); a click on a confusion cell shows that cell's photos under their
heatmaps."""

import re
import shutil

import pytest

from flower_core.store.runs import HISTORY, METRICS, STATUS, Run, RunStore, append_jsonl, write_json
from tests.browser import needs_chromium, page_on_home, settle, streamlit_server

from .test_e2e_browser import SHOTS, open_page

pytestmark = needs_chromium
VIEWPORT = {"width": 1400, "height": 900}
# The grid's scrolling element and how far its content reaches past its visible width.
OVERFLOW = """() => {
    const grid = document.querySelector('[data-testid=stDataFrame] .dvn-scroller');
    const box = document.querySelector('[data-testid=stDataFrame]').getBoundingClientRect();
    return {overflow: grid.scrollWidth - grid.clientWidth, right: box.right,
            viewport: window.innerWidth};
}"""


def _runs(root) -> None:
    """Three runs with the widest values their columns hold: a long name, the longest backbone
    and preset names, every state a finished run can have."""
    store = RunStore(root)
    for i, (preset, backbone, state) in enumerate(
        (
            ("dropout20", "efficientnet_lite2", "done"),
            ("finetune", "mobilenet", "cancelled"),
            ("base", "vgg16", "interrupted"),
        )
    ):
        run_dir = store.create(
            {
                "preset": preset,
                "backbone": backbone,
                "weights": "imagenet",
                "image_size": 384,
                "batch_size": 32,
                "dropout": 0.2,
                "augment": True,
                "augment_cache": "maps",
            },
            preset,
            backbone,
        )
        write_json(
            run_dir / STATUS,
            {
                "state": state,
                "started": f"2026-01-0{i + 1}T10:00:00+00:00",
                "finished": f"2026-01-0{i + 1}T11:00:00+00:00",
            },
        )
        append_jsonl(
            run_dir / HISTORY,
            {
                "epoch": 0,
                "loss": 0.5,
                "accuracy": 0.8,
                "val_loss": 0.6,
                "val_accuracy": 0.8123,
                "seconds": 61.5,
            },
        )
        write_json(run_dir / METRICS, {"test_accuracy": 0.8765, "test_loss": 0.412345})
    store.set_meta(run_dir.name, name="a long run name given on the Compare page", tags=["x"])


@pytest.fixture
def compare_page(tmp_path):
    from flower_core.data.synthetic import generate

    generate(tmp_path / "flowers", per_class=4, size=32, seed=0)
    _runs(tmp_path / "runs")
    with streamlit_server(tmp_path) as (url, _), page_on_home(url, **VIEWPORT) as page:
        yield page


def test_the_runs_table_fits_a_1400_px_window_with_no_sideways_scroll(compare_page):
    page = compare_page
    open_page(page, "compare")
    page.get_by_test_id("stDataFrame").first.wait_for()
    settle(page, 1.5)
    fitted = page.evaluate(OVERFLOW)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "compare-table-1400px.png"))
    print(f"runs table at 1400 px: {fitted}")
    assert fitted["overflow"] <= 0 and fitted["right"] <= fitted["viewport"], fitted
    page.set_viewport_size({"width": 900, "height": 900})  # a window too narrow: the check sees it
    settle(page, 1.5)
    narrow = page.evaluate(OVERFLOW)
    assert narrow["overflow"] > 0, (fitted, narrow)


def test_a_click_on_a_confusion_cell_shows_its_photos_under_their_heatmaps(
    tmp_path, app_runs_template, synthetic_dataset
):
    from ui.classify_view import MISTAKES_SHOWN

    shutil.copytree(app_runs_template, tmp_path / "runs")
    (tmp_path / "flowers").symlink_to(synthetic_dataset)
    run = Run.open(tmp_path / "runs" / "20260101-000100-dropout20-mobilenet-bbbb")
    true_name, predicted, count = run.metrics.confused_cells()[0]
    names = list(run.metrics.class_names)
    with streamlit_server(tmp_path) as (url, _), page_on_home(url, **VIEWPORT) as page:
        open_page(page, "compare")
        page.get_by_role("tab", name=re.compile("Confusion matrices")).click()
        cells = page.locator(f".st-key-compare_cm_{run.id} .nsewdrag").first  # the plot area
        cells.wait_for()
        settle(page)
        box = cells.bounding_box()
        column, row = names.index(predicted), names.index(true_name)  # rows true, top first
        page.mouse.click(
            box["x"] + (column + 0.5) * box["width"] / len(names),
            box["y"] + (row + 0.5) * box["height"] / len(names),
        )
        heading = page.get_by_text(f"{true_name} photos predicted as {predicted}")
        heading.wait_for()
        shown = page.locator("[data-testid=stImage] img")
        shown.nth(min(count, MISTAKES_SHOWN) - 1).wait_for()  # each heatmap drawn as it is computed
        settle(page, 1.5)
        heading.scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "compare-confusion-cell.png"))
        assert shown.count() == min(count, MISTAKES_SHOWN)
        assert not page.get_by_test_id("stException").count()
