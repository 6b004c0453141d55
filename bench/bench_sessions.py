"""Many people at once: N browser sessions (Playwright, Chromium) browse every page and
classify a photo each, with its Grad-CAM heatmap, while a training job runs; prints the server's
memory (idle before, peak during, after, and after a settle) and the wall time.

    python bench/bench_sessions.py [--sessions 1 5 10] [--model best|mobilenet384|tiny] [--settle 30]

`best` is a run of the suggested preset (EfficientNet-Lite0 at 384 px, ImageNet weights from the
pip package, trained 2 epochs on the synthetic set: the same size as a real one); `mobilenet384`
the same recipe on MobileNet (its weights from `FLOWER_WEIGHTS_DIR`); `tiny` the tests' VGG16 at
32 px. Every group of sessions runs on the same server, one after another, each with its own peak.
The server inherits this process's environment: run it with `MALLOC_ARENA_MAX=2`, as
`scripts/app.sh` starts the app, to measure what a real server does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit

# isort: split
from flower_core.config import SUGGESTED_PRESET
from tests.browser import TINY_RUN, classroom, memory_mb, sessions_during_a_job

MODELS = {
    "best": ("--preset", SUGGESTED_PRESET, "--weights", "imagenet"),
    "mobilenet384": ("--preset", SUGGESTED_PRESET, "--backbone", "mobilenet", "--weights", "imagenet"),
    "tiny": TINY_RUN,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--model", choices=list(MODELS), default="best")
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="seconds to wait after the sessions before the last reading",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sessions_") as work:
        with classroom(Path(work), MODELS[args.model]) as (url, server, finished):
            for count in args.sessions:
                seen, figures, _ = sessions_during_a_job(Path(work), url, server, count, finished)
                time.sleep(args.settle)
                settled = round(memory_mb(server.pid)["VmRSS"])
                emit(
                    "browser_sessions",
                    model=args.model,
                    run=finished.name,
                    **figures,
                    settle_s=args.settle,
                    server_rss_mb_settled=settled,
                    malloc_arena_max=os.environ.get("MALLOC_ARENA_MAX"),
                    problems=[s["problems"][0][:200] for s in seen if s["problems"]],
                )


if __name__ == "__main__":
    main()
