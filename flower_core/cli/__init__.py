"""The command line, `python -m flower_core` (argument parsing and output only): `commands` builds
the parser and runs a command, `groups` adds the study and sweep commands, `options` holds what
every command shares."""

from flower_core.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
