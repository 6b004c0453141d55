"""The options and output that every command shares, read from the one place each is declared
(training settings from `config.SETTINGS`)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json

from flower_core.config import (
    DEFAULT_PRESET,
    DEFAULTS,
    PRESET_DESCRIPTIONS,
    PRESETS,
    SETTINGS,
    TrainConfig,
    parse_setting,
)
from flower_core.errors import FlowerError


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FlowerError(f"{self.prog}: {message}")


def emit(args, payload: dict, text: str) -> None:
    if args.json:
        print(json.dumps(payload))
    else:
        print(text)


def presets_text() -> str:
    width = max(map(len, PRESET_DESCRIPTIONS))
    lines = [f"  {name:<{width}}  {text}" for name, text in PRESET_DESCRIPTIONS.items()]
    return "presets (each setting option overrides the preset's value):\n" + "\n".join(lines)


def _defaults_text(name: str) -> str:
    """ "(default X; Y in presets a, b)": the base value and the presets that change it."""

    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    by_value: dict[str, list[str]] = {}
    for preset, changes in PRESETS.items():
        if name in changes:
            by_value.setdefault(shown(changes[name]), []).append(preset)
    presets = "; ".join(f"{value} in {', '.join(names)}" for value, names in by_value.items())
    return f"(default {shown(getattr(DEFAULTS, name))}{'; ' + presets if presets else ''})"


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per training setting, from `config.SETTINGS`: help, choices and type."""
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        metavar="NAME",
        help=f"the recipe every setting starts from (default {DEFAULT_PRESET}; listed below)",
    )
    for name in SETTINGS:
        add_setting_option(parser, name)


def add_setting_option(parser: argparse.ArgumentParser, name: str) -> None:
    """The option of one training setting, from its `config.SETTINGS` entry: help, choices, type;
    its default is None, so an option left out keeps the preset's value."""
    spec = SETTINGS[name]
    kind = {f.name: f.type for f in dataclasses.fields(TrainConfig)}[name]
    flag = "--" + name.replace("_", "-")
    text = f"{spec.help} {_defaults_text(name)}".replace("%", "%%")
    if kind == "bool":
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        for alias in spec.cli_aliases:
            parser.add_argument(alias, dest=name, action="store_false", help=f"same as --no-{flag[2:]}")
        return
    parse = {"int": int, "float": float, "str": str}.get(kind) or functools.partial(parse_setting, name)
    # Choices are checked by `TrainConfig.validate`, whose message names the setting.
    metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else name.upper()
    parser.add_argument(flag, type=parse, default=None, help=text, metavar=metavar)


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="the dataset folder, <root>/<class>/<photo> (default: FLOWER_DATA, else data/flowers)"
    )


def add_runs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", help="where run folders go (default: FLOWER_RUNS, else runs/)")


def add_run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a run folder (runs/<id>)")
