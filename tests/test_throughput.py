"""Feature extraction's photos/s and time left (progress.Throughput) and the CLI's bar for it."""

import io

from flower_core.training.progress import TerminalReporter, Throughput


def _clock(*times):
    return iter(times).__next__


def test_no_rate_before_anything_is_measurable():
    stats = Throughput("train features", clock=_clock(5.0, 5.0)).update(0, 140)
    assert (stats["photos_per_s"], stats["eta_s"]) == (None, None)
    assert stats["message"] == "computing train features 0/140"


def test_rate_after_the_first_batch_leaves_out_the_graph_tracing():
    throughput = Throughput("validation features", clock=_clock(0.0, 10.0, 12.0, 14.0))
    first = throughput.update(32, 160)  # 10 s including tracing: 3.2 photos/s
    assert first["photos_per_s"] == 3.2 and first["eta_s"] == 40.0
    throughput.update(64, 160)
    last = throughput.update(96, 160)  # 64 photos in the 4 s after the first batch
    assert last["photos_per_s"] == 16.0 and last["eta_s"] == 4.0
    assert last["message"] == "computing validation features 96/160 · 16.0 photos/s · 4 s left"


def test_the_cli_draws_a_bar_with_rate_and_time_left():
    stream = io.StringIO()
    stats = Throughput("train features", clock=_clock(0.0, 2.0)).update(70, 140)
    TerminalReporter(stream, width=10)({"kind": "stage", **stats, "done": False})
    assert stream.getvalue().startswith(
        "\rcomputing train features [#####     ] 70/140 35.0 photos/s, 2 s left"
    )
