"""The maintainers' log: a training's `run.log` holds its stages and the traceback behind a
one-line error, and stops collecting when the training ends."""

import logging

from flower_core.errors import FlowerError, one_line
from flower_core.store.logs import ROOT_LOGGER, log_to_file


def test_run_log_keeps_the_traceback_and_only_what_was_logged_during_the_block(tmp_path):
    log = logging.getLogger(f"{ROOT_LOGGER}.train")
    path = tmp_path / "run.log"
    with log_to_file(path):
        log.info("computing train features")
        try:
            raise ValueError("a bug deep inside")
        except ValueError:
            log.exception("failed on an unexpected error")
    log.info("after the run")
    text = path.read_text()
    assert "INFO flower_core.train: computing train features" in text
    assert "Traceback (most recent call last)" in text and "ValueError: a bug deep inside" in text
    assert "after the run" not in text
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger(ROOT_LOGGER).handlers)


def test_nothing_is_written_for_a_block_that_logs_nothing(tmp_path):
    with log_to_file(tmp_path / "run.log"):
        pass
    assert not (tmp_path / "run.log").exists()


def test_an_error_reads_as_one_line_and_a_fault_names_its_type():
    assert one_line(FlowerError("run x has no model.keras\nsecond line")) == "run x has no model.keras"
    assert one_line(KeyError("backbone")) == "KeyError: 'backbone'"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert len(one_line(ValueError("x" * 1000))) == 300
