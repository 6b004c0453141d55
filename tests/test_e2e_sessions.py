"""A class at once: five browser sessions browse every page and classify a photo each while a
training job runs in the background. No page shows an error, every session gets the prediction
the model gives for its own photo (no mix-up between sessions), the job keeps training and is
cancelled afterwards, and the server's peak memory is reported and stays bounded.

The figures are printed and written to `artifacts/sessions.json`; `bench/bench_sessions.py`
measures the same for any number of sessions.
"""

import json

import pytest

from tests.browser import ROOT, classroom, needs_chromium, sessions_during_a_job

pytestmark = needs_chromium
SESSIONS = 5
# The server holds TensorFlow, one model and the sessions' state: under 1 GiB here. Far more
# would mean something is loaded per session instead of once.
PEAK_MEMORY_BOUND_MB = 2500


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("classroom")
    with classroom(work) as (url, process, finished):
        yield work, url, process, finished


def test_five_sessions_browse_and_classify_while_a_job_trains(server):
    work, url, process, finished = server
    seen, figures, _ = sessions_during_a_job(work, url, process, SESSIONS, finished)
    print(json.dumps(figures))
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "sessions.json").write_text(json.dumps(figures, indent=2) + "\n")

    assert figures["job_during"] == "running" and figures["job_after"] == "cancelled", figures
    for session in seen:
        assert session["problems"] == [], session
        assert session["train_shows_running_job"], session
        assert session["prediction"] == session["expected"], session
        assert session["sure"] == session["expected_sure"], session
    assert figures["sessions_with_errors"] == figures["sessions_with_another_prediction"] == 0
    assert len({session["sure"] for session in seen}) > 1, "every session saw the same result"
    assert figures["server_peak_rss_mb"] < PEAK_MEMORY_BOUND_MB, figures
