"""Every training setting is one `TrainConfig` field: its help, limits and choices feed `validate`,
the command line and the Train form, so these tests check each of those against the one source."""

import math
from pathlib import Path

import pytest

from flower_core.cli import commands as cli
from flower_core.config import (
    BEST_RESULT,
    DEFAULTS,
    PRESET_DESCRIPTIONS,
    PRESETS,
    SETTINGS,
    SUGGESTED_PRESET,
    make_config,
    parse_setting,
)
from flower_core.errors import FlowerError


def _train_help() -> str:
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    return train.format_help()


def test_every_setting_has_an_option_with_its_help_and_default():
    text = " ".join(_train_help().split())
    for name, spec in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        shown = (
            ",".join(map(str, DEFAULTS.dense_units))
            if name == "dense_units"
            else str(getattr(DEFAULTS, name))
        )
        assert " ".join(spec.help.split()) in text and f"(default {shown}" in text, name


def test_every_option_of_every_command_says_what_it_does():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    silent = [
        f"{command} {action.option_strings or action.dest}"
        for command, sub in commands.items()
        for action in sub._actions
        if not action.help
    ]
    assert not silent
    assert {"study", "sweep", "groups", "export"} <= set(commands)


def test_the_settings_and_the_whole_parser_import_no_tensorflow():
    """The settings, the backbone specs and every command's options (the CAM methods' names are
    read only when `explain` parses) are known before TensorFlow loads."""
    import subprocess
    import sys

    code = (
        "import sys, flower_core.config; assert 'tensorflow' not in sys.modules, 'config imported it'; "
        "from flower_core.cli import build_parser; build_parser().parse_args(['synth', '--out', 'x']); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'the parser imported it'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_help_lists_every_preset_with_its_line():
    text = _train_help()
    for name, description in PRESET_DESCRIPTIONS.items():
        assert f"  {name}" in text and description in text
    assert set(PRESET_DESCRIPTIONS) == set(PRESETS)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"seed": -1}, "seed must be between 0 and 2147483647. Received: seed=-1"),
        ({"seed": 2**40}, "seed must be between 0 and 2147483647"),
        ({"learning_rate": math.inf}, "learning rate must be a finite number"),
        ({"learning_rate": math.nan}, "learning rate must be a finite number"),
        ({"patience": -1}, "early-stopping patience must be between 0 and 100000"),
        ({"fine_tune_epochs": -1}, "fine-tune epochs must be between 1 and 100000"),
        ({"image_size": "224"}, "image size must be of type int. Received: image_size='224'"),
        ({"augment": 1}, "augmentation must be of type bool"),
        ({"epochs": True}, "epochs must be of type int"),
        ({"dense_units": [512, 0]}, "dense units must be positive"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must add up to less than 1"),
        ({"pooling": "min"}, "pooling must be max or avg. Received: pooling='min'"),
        (
            {"backbone": "lite0_mobilenet", "preprocessing": "imagenet", "image_size": 299},
            "grids match only when the image size is a multiple of 32 px. Received: image_size=299",
        ),
    ],
)
def test_bad_values_are_refused_with_the_setting_and_the_value(overrides, message):
    with pytest.raises(FlowerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("base", **overrides)


def test_limits_come_from_one_place():
    assert SETTINGS["image_size"].limits_text() == "between 32 and 1024"
    assert SETTINGS["dropout"].limits_text() == "in [0, 1)"
    assert SETTINGS["learning_rate"].limits_text() == "positive"
    assert SETTINGS["batch_size"].limits_text() == "at least 1"
    assert SETTINGS["epochs"].limits_text() == "between 1 and 100000"
    for name, spec in SETTINGS.items():
        value = getattr(DEFAULTS, name)
        assert spec.problem(value) is None, f"the default of {name} breaks its own limits"
        assert all(spec.problem(option) is None for option in spec.options), name


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("dense_units", "256, 64", [256, 64]),
        ("augment", "yes", True),
        ("batchnorm", "off", False),
        ("learning_rate", "1e-4", 1e-4),
        ("pooling", "avg", "avg"),
        ("epochs", "7", 7),
    ],
)
def test_parse_setting_reads_each_kind(name, text, value):
    assert parse_setting(name, text) == value


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("epochs", "two", "epochs takes a value of type int. Received: epochs='two'"),
        ("augment", "maybe", "augmentation takes true or false"),
        ("colour", "red", "unknown setting 'colour'"),
    ],
)
def test_parse_setting_refuses_what_it_cannot_read(name, text, message):
    with pytest.raises(FlowerError, match=message):
        parse_setting(name, text)


def test_the_suggested_preset_names_the_backbone_its_figure_was_measured_with():
    assert PRESETS[SUGGESTED_PRESET]["backbone"] == "lite0_mobilenet"
    assert make_config(SUGGESTED_PRESET).backbone == "lite0_mobilenet"
    assert 0 < BEST_RESULT[1] < BEST_RESULT[0] <= 1


@pytest.mark.parametrize(
    "args",
    [
        ["--seed", "-1"],
        ["--seed", str(2**40)],
        ["--learning-rate", "inf"],
        ["--patience", "-1"],
        ["--fine-tune-epochs", "-1"],
        ["--dense-units", "512,x"],
        ["--backbone", "alexnet"],
    ],
)
def test_bad_settings_exit_2_before_any_run_folder_exists(args, tmp_path, capsys, synthetic_dataset):
    runs = tmp_path / "runs"
    code = cli.main(["train", "--data", str(synthetic_dataset), "--runs", str(runs), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert not runs.exists() or not any(runs.iterdir())


OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "OPERATIONS.md"
# The settings whose limits docs/OPERATIONS.md states, in the words `validate` refuses a value with.
QUOTED_LIMITS = [
    "image_size",
    "epochs",
    "fine_tune_epochs",
    "patience",
    "seed",
    "learning_rate",
    "fine_tune_learning_rate",
]


@pytest.mark.parametrize("name", QUOTED_LIMITS)
def test_the_operations_guide_quotes_each_settings_limits_as_a_refusal_words_them(name):
    lines = OPERATIONS.read_text().splitlines()
    row = next(line for line in lines if line.startswith("| training settings |"))
    spec = SETTINGS[name]
    assert f"{spec.noun} must be {spec.limits_text()}" in row
