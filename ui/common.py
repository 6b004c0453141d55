"""What every page shares: where the data and runs are, the page header, and error display."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
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
PAGES: dict[str, object] = {
    "home": None,  # the Home page object, registered by app.py (`register_home`)
    "dataset": "pages/1_Dataset.py",
    "train": "pages/2_Train.py",
    "compare": "pages/3_Compare.py",
    "classify": "pages/4_Classify.py",
}


def register_home(page) -> None:
    """Remember the Home page (a callable page of app.py) so other pages can link to it."""
    PAGES["home"] = page


def link(page: str, label: str, icon: str = ":material/arrow_forward:") -> None:
    """A link to one of the app's pages by key (`PAGES`)."""
    if PAGES.get(page) is not None:
        st.page_link(PAGES[page], label=label, icon=icon)


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


def page(title: str, caption: str, icon: str = "") -> None:
    """The browser tab's title, the page's title and a one-line explanation under it; and a
    training worker kept waiting (every page draws this first, also when opened by its URL on a
    server's first request, which Streamlit runs without app.py)."""
    st.set_page_config(page_title=f"{title} · {APP_NAME}" if title != APP_NAME else APP_NAME)
    st.title(f"{icon} {title}".strip())
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


@contextmanager
def guard(action: str, progress: str | None = None):
    """Run a page action so that any error shows as one line (`failure`), never as Streamlit's
    traceback box, and the page's script stops there.

    Args:
        action: what failed, as the line starts, e.g. `"Cannot export the run"`.
        progress: the first text of a progress bar the block receives and that is removed when
            the block ends, however it ends. Defaults to `None` (no bar; the block gets `None`).
    """
    bar = st.progress(0.0, text=progress) if progress is not None else None
    try:
        yield bar
    except Exception as error:  # a fault of any kind must not take the page down
        _clear(bar)  # before `st.stop`, after which the page takes no more changes
        st.error(failure(error, action), icon=":material/error:")
        st.stop()
    finally:
        _clear(bar)


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


def progress_reporter(bar, label: str):
    """A `progress(done, total)` callback that moves `bar` at most once per percent."""
    shown = [-1]

    def report(done: int, total: int) -> None:
        step = int(100 * done / max(total, 1))
        if step != shown[0]:
            shown[0] = step
            bar.progress(min(step, 100) / 100, text=f"{label} {done:,}/{total:,}")

    return report
