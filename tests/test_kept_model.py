"""A worker killed just after its first epoch keeps that epoch's model, and says so."""

import time

import pytest

from flower_core.store.runs import RunStore, load_run_model, read_history, read_status
from tests.test_train import _start_long_run


@pytest.mark.slow
def test_a_run_killed_after_its_first_epoch_keeps_that_epochs_model_and_says_so(synthetic_dataset, tmp_path):
    runs = tmp_path / "runs"
    process = _start_long_run(synthetic_dataset, runs)
    try:
        deadline = time.time() + 240
        while not any(read_history(d) for d in RunStore(runs).run_dirs()) and time.time() < deadline:
            time.sleep(0.1)
        [run_dir] = RunStore(runs).run_dirs()
        waited = time.time()
        while not (run_dir / "model.keras").exists() and time.time() - waited < 10:
            time.sleep(0.1)  # written right after the epoch's history line, not 30 s later
    finally:
        process.kill()
        process.wait()
    status = read_status(run_dir)
    assert status.state == "interrupted"
    kept = status.kept_epoch
    assert 1 <= kept <= len(read_history(run_dir))
    assert status.message.endswith(f"the model of epoch {kept} (the best until then) is kept")
    assert load_run_model(run_dir).output_shape == (None, 5)
