"""Many people at once: N browser sessions (Playwright, Debian's chromium) browse every page and
classify a photo each while a training job runs; prints the server's memory and the wall time.

    python bench/bench_sessions.py [--sessions 5 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit

# isort: split
from tests.browser import classroom, sessions_during_a_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[5, 10])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sessions_") as work:
        with classroom(Path(work)) as (url, server, finished):
            for count in args.sessions:
                _, figures, _ = sessions_during_a_job(Path(work), url, server, count, finished)
                emit("browser_sessions", **figures)


if __name__ == "__main__":
    main()
