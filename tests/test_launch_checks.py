"""A launch that cannot start says so before the click, in the words the click fails with: the
core check (`jobs.launch_problem`), the Train form, the study and the sweep launchers; errors
name the app's controls, not command-line flags; a failed launch leaves the Job column."""

import pytest

from flower_core.cli import main
from flower_core.config import MAX_SEEDS, SETTINGS, make_config
from flower_core.errors import FlowerError
from flower_core.groups import group as groups
from flower_core.groups.sweep import plan_sweep
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import missing_weights_message
from flower_core.training import jobs

from .test_app_pages import app_env, open_page, synthetic, texts  # noqa: F401

SCRATCH = f"set {SETTINGS['weights'].label} to none (train from scratch)"


def _vgg16() -> list:
    return [make_config("base", backbone="vgg16", weights="imagenet")]


def test_the_check_before_the_click_says_what_the_click_says(synthetic_dataset):
    problem = jobs.launch_problem(_vgg16, synthetic_dataset, online=False)
    assert problem == missing_weights_message(BACKBONES["vgg16"])
    assert SCRATCH in problem and "--" not in problem
    with pytest.raises(FlowerError) as refused:
        jobs.create_run(_vgg16()[0], synthetic_dataset)  # offline: Keras' download fails
    assert str(refused.value) == problem
    assert jobs.launch_problem(_vgg16, synthetic_dataset, online=True) is None
    no_weights = lambda: [make_config("base", backbone="vgg16", weights="none")]  # noqa: E731
    assert jobs.launch_problem(no_weights, synthetic_dataset) is None


def test_the_check_names_a_missing_dataset_and_a_sweep_too_big(tmp_path, synthetic_dataset):
    none = lambda: [make_config("base", weights="none")]  # noqa: E731
    assert jobs.launch_problem(none, tmp_path / "nothing").startswith("dataset folder not found")
    grid = {"dropout": [0.1 * i for i in range(1, 10)]}
    too_big = lambda: [p.config for p in plan_sweep("base", grid, seeds=5, max_runs=20)]  # noqa: E731
    problem = jobs.launch_problem(too_big, synthetic_dataset)
    assert problem.startswith("the sweep would queue 45 runs, more than the maximum of 20")
    assert "--" not in problem


def test_the_cli_shows_the_same_one_line(synthetic_dataset, capsys):
    args = ["train", "--data", str(synthetic_dataset), "--backbone", "vgg16", "--image-size", "32"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: {missing_weights_message(BACKBONES['vgg16'])}" and error.endswith(SCRATCH)


@pytest.mark.usefixtures("synthetic")
def test_train_is_disabled_with_the_reason_until_the_form_can_start(no_worker):
    at = open_page("pages/2_Train.py")
    assert not at.button(key="train_submit").disabled
    at.selectbox(key="train_best_backbone").set_value("vgg16").run()
    assert at.button(key="train_submit").disabled
    reason = f"Cannot start training: {missing_weights_message(BACKBONES['vgg16'])}"
    assert reason in texts(at.warning) and "--weights" not in texts(at.warning)
    at.selectbox(key="train_best_weights").set_value("none").run()
    assert not at.button(key="train_submit").disabled and "Cannot start" not in texts(at.warning)
    at.selectbox(key="train_best_weights").set_value("file").run()
    assert at.button(key="train_submit").disabled
    assert "Cannot start training: no weights given" in texts(at.warning)


@pytest.mark.usefixtures("synthetic")
def test_the_study_and_sweep_launchers_say_why_they_cannot_start_and_estimate_nothing(no_worker):
    at = open_page("pages/2_Train.py")
    at.selectbox(key="study_backbone").set_value("vgg16").run()
    assert at.button(key="study_start").disabled
    assert f"Cannot start the study: {missing_weights_message(BACKBONES['vgg16'])}" in texts(at.warning)
    assert not [c for c in at.caption if "runs, about" in c.value], "an estimate for a study that cannot run"
    at.selectbox(key="sweep_preset").set_value("dropout20").run()
    at.selectbox(key="sweep_weights").set_value("none")
    at.text_input(key="sweep_values_dropout").set_value(",".join(f"0.{i}" for i in range(1, 10)))
    at.number_input(key="sweep_seeds").set_value(MAX_SEEDS).run()
    assert at.button(key="sweep_start").disabled
    assert f"Cannot start the sweep: the sweep would queue {9 * MAX_SEEDS} runs" in texts(at.warning)
    at.number_input(key="sweep_seeds").set_value(1).run()
    assert not at.button(key="sweep_start").disabled
    assert not groups.list_groups()


@pytest.mark.usefixtures("synthetic")
def test_a_launch_that_fails_at_the_click_keeps_the_job_column(monkeypatch):
    monkeypatch.setattr("ui.home.is_online", lambda: True)  # Keras' download is tried, and fails
    at = open_page("pages/2_Train.py")
    at.selectbox(key="train_best_backbone").set_value("vgg16").run()
    assert not at.button(key="train_submit").disabled
    at.button(key="train_submit").click().run()
    assert texts(at.error) == f"Cannot start training: {missing_weights_message(BACKBONES['vgg16'])}"
    assert "Job" in texts(at.subheader) and "No training yet" in texts(at.info)
    assert not jobs.queued_runs()
