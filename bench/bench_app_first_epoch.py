"""Seconds from clicking Train in the app to the first epoch shown on the page, with a cold
feature cache and then a warm one (the same settings again), in a real browser.

`streamlit run app.py` over the real photos (`FLOWER_DATA`, the first `--subset` of each class,
or all of them with `--subset 0`) or a synthetic set, Chromium driven by Playwright.
The form keeps its defaults (the suggested preset, a frozen ImageNet backbone, so the feature
cache is used) except `--backbone` and `--image-size` when given. The first click waits until
the worker the app starts as it opens has warmed up. Each run is cancelled as soon as its first
epoch shows.

    FLOWER_DATA=../shared/data/flowers FLOWER_WEIGHTS_DIR=../shared/weights \
        python bench/bench_app_first_epoch.py [--subset 60] [--image-size 224] [--backbone mobilenet]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import dataset_root, emit, subset_folder, wait_until_idle, worker_pid

# isort: split
from flower_core.config import PRESETS, SETTINGS, SUGGESTED_PRESET
from flower_core.store.runs import HISTORY, RunStore, read_status
from tests.browser import CHROMIUM, LAUNCH_ARGS, streamlit_server

FIRST_EPOCH = re.compile(r"Epoch [1-9]\d* of \d+ done")


def click_to_first_epoch(page, runs: Path) -> dict:
    """Press Train; seconds until the page shows a finished epoch, and when in between the run
    was queued and its first epoch written (from the run folder). Then cancel the run."""
    before = set(RunStore(runs).run_dirs())
    page.locator(".st-key-train_submit button").click()
    started, clicked = time.perf_counter(), time.time()
    page.get_by_text(FIRST_EPOCH).wait_for(timeout=1_800_000)
    seconds = time.perf_counter() - started
    (run_dir,) = set(RunStore(runs).run_dirs()) - before
    queued = read_status(run_dir).queued_ns / 1e9
    written = (run_dir / HISTORY).stat().st_mtime  # 1 epoch or 2: the first takes longer than this
    page.locator(".st-key-train_cancel button").click()
    page.get_by_text(re.compile("cancelled|Test accuracy")).first.wait_for(timeout=600_000)
    return {
        "seconds": round(seconds, 1),
        "queued_after_click_s": round(queued - clicked, 2),
        "epoch_written_after_click_s": round(written - clicked, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=60, help="photos per class (0: all)")
    parser.add_argument("--backbone", help="default: the suggested preset's")
    parser.add_argument("--image-size", type=int, help="default: the suggested preset's")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    preset = PRESETS[SUGGESTED_PRESET]
    backbone = args.backbone or preset["backbone"]
    image_size = args.image_size or preset["image_size"]
    with tempfile.TemporaryDirectory(prefix="bench_first_epoch_") as work:
        work = Path(work)
        root, kind = dataset_root(args.subset or 60, 128, work)
        (work / "flowers").symlink_to(subset_folder(root, args.subset, work))
        with streamlit_server(work) as (url, _), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/Train")
            page.get_by_role("heading", name="Train").first.wait_for()
            key = f".st-key-train_{SUGGESTED_PRESET}"
            if backbone != preset["backbone"]:
                page.locator(f"{key}_backbone [role=combobox]").click()
                page.get_by_role("option", name=backbone, exact=True).click()
            sizes = SETTINGS["image_size"].options
            steps = sizes.index(image_size) - sizes.index(preset["image_size"])
            for _ in range(abs(steps)):
                page.locator(f"{key}_image_size input[type=range]").press(
                    "ArrowRight" if steps > 0 else "ArrowLeft"
                )
            page.locator(f"{key}_image_size").get_by_text(str(image_size), exact=True).wait_for()
            while (pid := worker_pid(work / "runs")) is None:
                time.sleep(0.1)
            settled = wait_until_idle(pid)
            for cache in ("cold", "warm"):
                emit(
                    "app_click_to_first_epoch",
                    cache=cache,
                    **click_to_first_epoch(page, work / "runs"),
                    data=kind,
                    photos_per_class=args.subset or "all",
                    backbone=backbone,
                    image_size=image_size,
                    preset=f"{SUGGESTED_PRESET} (the form's default)",
                    worker_warm_up_s=round(settled, 1),
                )
            browser.close()


if __name__ == "__main__":
    main()
