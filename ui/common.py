"""What every page shares: where the data and runs are, the page header, and error display."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from flower_core.data.dataset import resolve_data_root
from flower_core.errors import FlowerError, one_line
from flower_core.store.logs import ROOT_LOGGER, log_to_stderr
from flower_core.store.runs import resolve_runs_root
from flower_core.store.settings import save_data_root, saved_data_root
from flower_core.training import jobs

ASSETS = Path(__file__).resolve().parents[1] / "assets"
APP_NAME = "Flower Studio"
log = logging.getLogger(f"{ROOT_LOGGER}.ui")
# The server's log (its console): what pages refused, and the traceback behind each one-line error.
log_to_stderr()
SERVER_LOG = "the server's log"
APP_ICON = ":material/local_florist:"


@dataclass(frozen=True)
class PageEntry:
    """One page of the app: its script (`None` for Home, a function of app.py), its section of
    the menu, its title and icon (menu, browser tab and heading) and what it shows, in one line
    (Home's directory of the other pages)."""

    script: str | None
    section: str
    title: str
    icon: str
    description: str


PAGES: dict[str, PageEntry] = {
    "home": PageEntry(None, "", "Home", ":material/home:", ""),
    "dataset": PageEntry(
        "pages/1_Dataset.py",
        "Study",
        "Dataset",
        ":material/photo_library:",
        "Build the dataset, find and fix its label errors, look at its photos",
    ),
    "train": PageEntry(
        "pages/2_Train.py",
        "Study",
        "Train",
        ":material/model_training:",
        "Pick a preset or tune every setting, then follow the training live",
    ),
    "compare": PageEntry(
        "pages/3_Compare.py",
        "Study",
        "Compare",
        ":material/leaderboard:",
        "All runs side by side, against the study's published results",
    ),
    "classify": PageEntry(
        "pages/4_Classify.py",
        "Study",
        "Classify & explain",
        ":material/center_focus_strong:",
        "Upload a photo, see the prediction and where the model looked",
    ),
}
# The `st.Page` of each entry, once app.py has made them (`navigation_pages`).
_NAVIGATION: dict[str, object] = {}


def navigation_pages(home) -> dict[str, list]:
    """The menu's sections, each a list of `st.Page` made from `PAGES` (Home's is the function
    `home`); they are remembered, so `link` and `target` point at them."""
    sections: dict[str, list] = {}
    for key, entry in PAGES.items():
        _NAVIGATION[key] = st.Page(
            entry.script or home, title=entry.title, icon=entry.icon, default=entry.script is None
        )
        sections.setdefault(entry.section, []).append(_NAVIGATION[key])
    return sections


def target(page: str):
    """What `st.page_link` and `st.switch_page` take for a page of `PAGES`: its `st.Page`, else
    its script (a page opened by its URL runs without app.py); `None` for Home then."""
    return _NAVIGATION.get(page) or PAGES[page].script


def link(page: str, label: str = "", icon: str = "") -> None:
    """A link to one of the app's pages by key (`PAGES`), by default with its title and icon."""
    entry = PAGES[page]
    if target(page) is not None:
        st.page_link(target(page), label=label or entry.title, icon=icon or entry.icon)


def runs_root() -> Path:
    """The runs folder (`FLOWER_RUNS`, else `runs/`)."""
    return resolve_runs_root()


def upload_limit_mb() -> int:
    """The largest upload in MB (`server.maxUploadSize` of `.streamlit/config.toml`); photos
    sent together are held to it too."""
    return int(st.get_option("server.maxUploadSize"))


def warm_worker() -> None:
    """A worker waits, TensorFlow loaded, for the next run (`jobs.keep_worker_warm`); one that
    cannot start is said under the page title and leaves Train to start one when pressed."""
    try:
        jobs.keep_worker_warm(runs_root(), data_root())
    except (FlowerError, OSError) as error:
        st.caption(f":material/warning: No training worker waiting: {error}")


def data_root() -> Path:
    """The dataset in use: this session's choice, else `FLOWER_DATA`, else the last one chosen
    in the app, else `data/flowers`."""
    if "data_root" not in st.session_state:
        saved = None if os.environ.get("FLOWER_DATA") else saved_data_root()
        st.session_state["data_root"] = str(saved or resolve_data_root())
    return Path(st.session_state["data_root"])


def set_data_root(path: str | os.PathLike) -> None:
    """Use another dataset in this session and remember it for the next visit (a one-line
    `FlowerError` when it cannot be saved; the session then keeps its dataset)."""
    st.session_state["data_root"] = str(save_data_root(path))


def page(key: str, caption: str) -> None:
    """The browser tab's title, the page's title (from `PAGES`; Home's is the app's name) and a
    one-line explanation under it; and a training worker kept waiting (every page draws this
    first, also when opened by its URL on a server's first request, which Streamlit runs
    without app.py)."""
    entry = PAGES[key]
    title, icon = (APP_NAME, APP_ICON) if entry.script is None else (entry.title, entry.icon)
    st.set_page_config(page_title=f"{title} · {APP_NAME}" if title != APP_NAME else APP_NAME)
    st.title(f"{icon} {title}")
    st.caption(caption)
    warm_worker()


def failure(error: Exception, action: str = "") -> str:
    """The one line a user sees for `error` during `action`, logged on the server: a `FlowerError`
    is a refusal whose message says it all; any other error is a fault, logged with its
    traceback, and the line says where that is."""
    line = f"{action}: {one_line(error)}" if action else one_line(error)
    if isinstance(error, FlowerError):
        log.info("%s", line, exc_info=True)
        return line
    log.exception("%s", line)
    return f"{line} (the traceback is in {SERVER_LOG})"


_KERAS_IMPORT = threading.Lock()


def import_keras_once() -> None:
    """Import Keras (and TensorFlow) whole, one script run at a time: Keras imports itself in a
    cycle, and two runs importing it at the same moment (two sessions, or a rerun beside the run
    it replaces) may each find the other's half-made modules, an ImportError on the page."""
    with _KERAS_IMPORT:
        import keras  # noqa: F401


@contextmanager
def guard(action: str, progress: str | None = None, stop: bool = True):
    """Run a page action so that any error shows as one line (`failure`), never as Streamlit's
    traceback box, and the page's script stops there.

    Args:
        action: what failed, as the line starts, e.g. `"Cannot export the run"`.
        progress: the first text of a progress bar the block receives and that is removed when
            the block ends, however it ends. Defaults to `None` (no bar; the block gets `None`).
        stop: stop the page's script after the error. Defaults to `True`; `False` skips the
            rest of the block only and draws the page on (a launch that failed leaves the Job
            column beside it).
    """
    bar = st.progress(0.0, text=progress) if progress is not None else None
    try:
        yield bar
    except Exception as error:  # a fault of any kind must not take the page down
        _clear(bar)  # before `st.stop`, after which the page takes no more changes
        st.error(failure(error, action), icon=":material/error:")
        if stop:
            st.stop()
    finally:
        _clear(bar)


def launch_button(label: str, action: str, problem: str | None, key: str, **options) -> bool:
    """A button that starts runs, disabled while `problem` (`jobs.launch_problem`, what the
    click would refuse with) says why they cannot start, that reason shown under it as the
    click's error would start it (`action`). Returns whether it was pressed."""
    disabled = options.pop("disabled", False) or problem is not None
    pressed = st.button(label, key=key, disabled=disabled, **options)
    if problem is not None:
        st.warning(f"{action}: {problem}", icon=":material/block:")
    return pressed


def group_estimate(what: str, estimate, *args) -> None:
    """How long a study's or sweep's runs should take, under its button: `estimate(*args)`, a
    cached `estimate_group`; while the backbone's speed is being measured the cache is cleared,
    so the next rerun estimates again from the measurement."""
    from flower_core.training.estimate import estimate_text  # loads TensorFlow, which this module does not

    with guard(f"Cannot estimate the {what}", stop=False):
        found = estimate(*args)
        if found["calibrating"]:
            estimate.clear()
        st.caption(
            f"{plural(len(found['runs']), 'run')}, {estimate_text(found)}. The shorter end is when "
            "early stopping ends runs early."
        )


def section_tabs(sections: dict, shown) -> None:
    """One tab per section, each drawing `shown` its way: `{tab label: section(shown)}`."""
    for tab, section in zip(st.tabs(list(sections)), sections.values()):
        with tab:
            section(shown)


def _clear(bar) -> None:
    if bar is not None:
        bar.empty()


def empty_state(message: str, page: str | None = None, label: str = "", icon: str = "") -> None:
    """A friendly message for missing inputs, with a link to the page that fixes it."""
    st.info(message, icon=":material/info:")
    if page:
        link(page, label, icon or ":material/arrow_forward:")


def plural(count: int, noun: str) -> str:
    """`1 group`, `2 groups`."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def short_name(path: str, length: int = 18) -> str:
    """A file's name without its folders, cut to `length` characters with an ellipsis."""
    name = str(path).split("/")[-1]
    return name if len(name) <= length else f"{name[: length - 1]}…"


def percent(value) -> str:
    """A fraction as a percentage with one decimal, or a dash when unknown."""
    return "–" if value is None else f"{value:.1%}"


def timed_reporter(bar, label: str):
    """A `progress(done, total)` callback that moves `bar` and says the seconds so far."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        seconds = time.monotonic() - started
        bar.progress(min(done / max(total, 1), 1.0), text=f"{label}: step {done} of {total}, {seconds:.0f} s")

    return report


def progress_reporter(bar, label: str):
    """A `progress(done, total)` callback that moves `bar` at most once per percent."""
    shown = [-1]

    def report(done: int, total: int) -> None:
        step = int(100 * done / max(total, 1))
        if step != shown[0]:
            shown[0] = step
            bar.progress(min(step, 100) / 100, text=f"{label} {done:,}/{total:,}")

    return report
