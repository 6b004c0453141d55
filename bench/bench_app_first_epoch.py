"""Seconds from clicking Train in the app to the first epoch shown on the page, with a cold
feature cache and then a warm one (the same settings again), in a real browser.

`streamlit run app.py` over the real photos (`FLOWER_DATA`, the first `--subset` of each class)
or a synthetic set, Debian's chromium driven by Playwright. The form keeps its defaults (the
suggested preset) except the backbone, which is MobileNet with ImageNet weights from
`FLOWER_WEIGHTS_DIR`: a frozen backbone, so the feature cache is used. Each run is cancelled as
soon as its first epoch shows.

    FLOWER_DATA=../shared/data/flowers FLOWER_WEIGHTS_DIR=../shared/weights \
        python bench/bench_app_first_epoch.py [--subset 60]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import dataset_root, emit, subset_folder

# isort: split
from tests.browser import CHROMIUM, LAUNCH_ARGS, streamlit_server

FIRST_EPOCH = re.compile(r"Epoch [1-9]\d* of \d+ done")


def click_to_first_epoch(page) -> float:
    """Press Train; seconds until the page shows a finished epoch. Then cancel the run."""
    page.locator(".st-key-train_submit button").click()
    started = time.perf_counter()
    page.get_by_text(FIRST_EPOCH).wait_for(timeout=1_800_000)
    seconds = time.perf_counter() - started
    page.locator(".st-key-train_cancel button").click()
    page.get_by_text(re.compile("cancelled|Test accuracy")).first.wait_for(timeout=600_000)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=60, help="photos per class")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench_first_epoch_") as work:
        work = Path(work)
        root, kind = dataset_root(args.subset, 128, work)
        (work / "flowers").symlink_to(subset_folder(root, args.subset, work))
        with streamlit_server(work) as (url, _), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/Train")
            page.get_by_role("heading", name="Train").first.wait_for()
            page.locator(".st-key-train_best_backbone [role=combobox]").click()
            page.get_by_role("option", name="mobilenet", exact=True).click()
            for cache in ("cold", "warm"):
                seconds = click_to_first_epoch(page)
                emit(
                    "app_click_to_first_epoch",
                    cache=cache,
                    seconds=round(seconds, 1),
                    data=kind,
                    photos_per_class=args.subset,
                    backbone="mobilenet",
                    preset="best (the form's default)",
                )
            browser.close()


if __name__ == "__main__":
    main()
