"""What the browser tests share: a Chromium (Debian's, else Playwright's own), and `streamlit run app.py`
on a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# The browser the tests drive: Debian's chromium where it is installed (Linux: scripts/test.sh
# installs it), else Playwright's own Chromium, which Playwright launches when no executable is
# named (macOS: scripts/test.sh downloads it; elsewhere the tests are skipped without Debian's).
CHROMIUM = str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.is_file() else None
ROOT = Path(__file__).resolve().parents[1]
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {
    "home": "Home",
    "dataset": "Dataset",
    "train": "Train",
    "compare": "Compare",
    "classify": "Classify & explain",
}
# Streamlit is busy while either shows; a page has settled once neither does.
BUSY = "[data-testid=stStatusWidgetRunningIcon], [data-testid=stSkeleton]"

needs_chromium = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None and sys.platform != "darwin",
        reason=f"Debian's chromium not found at {DEBIAN_CHROMIUM} "
        "(install it with `apt-get install chromium`; see scripts/test.sh)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


def app_env(work: Path) -> dict[str, str]:
    """The environment of a server whose dataset, runs, cache and data home live in `work`."""
    return {
        **os.environ,
        "FLOWER_DATA": str(work / "flowers"),
        "FLOWER_RUNS": str(work / "runs"),
        "FLOWER_CACHE": str(work / "cache"),
        "FLOWER_DATA_HOME": str(work / "data"),
        "KERAS_HOME": str(work / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


@contextmanager
def streamlit_server(work: Path):
    """`streamlit run app.py` on a free port with `app_env(work)`; yields (url, process)."""
    port = _free_port()
    with open(work / "streamlit.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
            ],
            cwd=ROOT,
            env=app_env(work),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, server)
            yield url, server
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextmanager
def page_on_home(url: str, width: int = 1440, height: int = 900):
    """Chromium (`CHROMIUM`, driven by Playwright) with one page open on the app's Home at `url`; yields
    the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("heading", name="Flower Studio").wait_for()
            yield page
        finally:
            browser.close()


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now (`VmRSS`) and at its peak so far (`VmHWM`) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    """Start a process's peak (`VmHWM`) afresh from its resident memory now (Linux 4.0+), so that
    each group of sessions on the same server gets its own peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def _settle(page) -> None:
    await page.wait_for_function(f"() => !document.querySelector('{BUSY}')", timeout=180_000)


async def _open(page, key: str) -> None:
    await page.get_by_test_id("stSidebar").get_by_role("link", name=PAGES[key], exact=True).click()
    await page.get_by_role("heading", name=PAGES[key]).first.wait_for()


async def _one_session(browser, url: str, photo: Path, running_run: str | None) -> dict:
    """One person: Home, Dataset, Train (the job in progress), Compare, then classify `photo`.
    Returns what they saw: the prediction, its certainty, and any error shown on a page (or
    the step that timed out)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(240_000)
    seen, problems = {}, []
    try:
        await page.goto(url)
        await page.get_by_role("heading", name="Flower Studio").wait_for()
        for key in ("dataset", "train", "compare", "classify"):
            await _open(page, key)
            if key == "train" and running_run:
                await page.get_by_text(f"Run {running_run}").wait_for()
                seen["train_shows_running_job"] = True
            elif key == "compare" and running_run:
                # While a run trains, Compare checks for finished runs every few seconds, so the
                # page is never idle for long: wait for its note instead.
                await page.get_by_text("this page updates as they finish").wait_for()
            elif key != "train":
                await _settle(page)
            problems += await page.get_by_test_id("stException").all_inner_texts()
        await page.locator(".st-key-classify_upload input[type=file]").set_input_files(str(photo))
        await page.get_by_text("What the model sees").wait_for()
        await _settle(page)
        metric = page.get_by_test_id("stMetric").filter(has_text="Prediction")
        seen["prediction"] = await metric.get_by_test_id("stMetricValue").inner_text()
        seen["sure"] = await metric.get_by_test_id("stMetricDelta").inner_text()
        problems += await page.get_by_test_id("stException").all_inner_texts()
        problems += await page.locator("[data-testid=stAlertContentError]").all_inner_texts()
    except PlaywrightTimeoutError as error:  # one slow session must not lose the others' figures
        problems.append(f"timed out: {str(error).splitlines()[0]}")
    finally:
        await context.close()
    return {"photo": photo.name, **seen, "problems": problems}


def drive_sessions(url: str, photos: list[Path], running_run: str | None = None) -> list[dict]:
    """One browser session per photo, all at once (separate browser contexts, so separate
    Streamlit sessions), each browsing every page and classifying its photo."""
    import asyncio

    from playwright.async_api import async_playwright

    async def main() -> list[dict]:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                return await asyncio.gather(
                    *(_one_session(browser, url, photo, running_run) for photo in photos)
                )
            finally:
                await browser.close()

    return asyncio.run(main())


# The tests' run: a VGG16 (no batch-norm), so even barely trained its probabilities differ from
# photo to photo, small enough to train in seconds.
TINY_RUN = ("--preset", "base", "--backbone", "vgg16", "--weights", "none", "--image-size", "32")


@contextmanager
def classroom(work: Path, run_options: tuple[str, ...] = TINY_RUN):
    """A synthetic set, one run trained by the CLI with `run_options` (2 epochs), and a server
    over them in `work`; yields (url, server process, the finished run's folder)."""
    import json

    from flower_core.data.synthetic import generate

    generate(work / "flowers", per_class=12, size=96, seed=1)
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "flower_core",
            "train",
            "--data",
            str(work / "flowers"),
            "--runs",
            str(work / "runs"),
            *run_options,
            "--epochs",
            "2",
            "--json",
        ],
        cwd=ROOT,
        env=app_env(work),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    finished = Path(json.loads(trained.stdout.strip().splitlines()[-1])["run_dir"])
    with streamlit_server(work) as (url, server):
        yield url, server, finished


def sessions_during_a_job(
    work: Path, url: str, server, count: int, finished: Path
) -> tuple[list[dict], dict, Path]:
    """Start a long training job, let `count` sessions browse and classify (one photo each, the
    classes in turn), then cancel the job. Returns what each session saw with what the
    `finished` run's model says of its photo (`expected`, `expected_sure`), the figures (server
    memory before and after, its peak while the sessions ran, the job's state during and after,
    the sessions that saw an error or another prediction) and the job's folder."""
    from flower_core.config import make_config
    from flower_core.data.synthetic import CLASSES
    from flower_core.evaluation.predict import load_run, predict_image
    from flower_core.store.runs import read_status
    from flower_core.training import jobs

    config = make_config(
        "base", backbone="mobilenet", weights="none", image_size=64, epochs=1000, patience=1000
    )
    job = jobs.submit(config, work / "flowers", work / "runs")
    try:
        _wait(job, "running")
        before = memory_mb(server.pid)["VmRSS"]
        reset_peak(server.pid)
        photos = [
            work / "flowers" / CLASSES[i % 5] / f"{CLASSES[i % 5]}_{i // 5:04d}.jpg" for i in range(count)
        ]
        with_clock = time.time()
        seen = drive_sessions(url, photos, running_run=job.name)
        seconds = time.time() - with_clock
        memory = memory_mb(server.pid)
        during = read_status(job).state
    finally:  # never leave a 1000-epoch job training after a failure
        jobs.cancel(job)
    _wait(job, "cancelled")
    model, class_names = load_run(finished)
    for session, photo in zip(seen, photos):
        expected = predict_image(model, class_names, photo.read_bytes())
        session["expected"] = expected["predicted_class"]
        session["expected_sure"] = f"{expected['probability']:.1%} sure"
    figures = {
        "sessions": count,
        "seconds": round(seconds, 1),
        "server_rss_mb_before": round(before),
        "server_rss_mb_after": round(memory["VmRSS"]),
        "server_peak_rss_mb": round(memory["VmHWM"]),
        "job_during": during,
        "job_after": read_status(job).state,
        "sessions_with_errors": sum(bool(s["problems"]) for s in seen),
        "sessions_with_another_prediction": sum(
            (s.get("prediction"), s.get("sure")) != (s["expected"], s["expected_sure"]) for s in seen
        ),
    }
    return seen, figures, job


def _wait(job: Path, state: str, timeout: float = 300) -> None:
    """Wait for the job to reach `state`; fail at once if it ends in another state."""
    from flower_core.store.runs import read_status

    deadline = time.time() + timeout
    while (now := read_status(job).state) != state:
        if now in ("done", "failed", "cancelled", "interrupted") or time.time() > deadline:
            raise AssertionError(f"the training job is {now}, expected {state}: {read_status(job)}")
        time.sleep(0.2)


def settle(page, seconds: float = 1.0) -> None:
    """Wait until Streamlit has run the script (its running icon may show a moment after a
    click), then `seconds` more for charts to draw."""
    page.wait_for_timeout(300)
    page.wait_for_function(f"() => !document.querySelector('{BUSY}')", timeout=300_000)
    page.wait_for_timeout(seconds * 1000)


def choose(page, key: str, option: str) -> None:
    """Pick `option` in a selectbox, then wait for the rerun it starts; its label may carry a note
    after the name, e.g. a backbone's "mobilenet (no download)" when its weights are here."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    wanted = page.get_by_role("option", name=re.compile(f"^{re.escape(option)}( \\(.*\\))?$"))
    for attempt in range(3):  # a click during the page's rerun may not open the list
        page.locator(f".st-key-{key} [role=combobox]").click()
        try:
            wanted.click(timeout=30_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
            settle(page)
    settle(page)
