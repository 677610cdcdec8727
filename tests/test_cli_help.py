"""`salesmesh --help` and every subcommand's --help print and exit 0 (argparse formats help
strings with %, so a stray one only shows up here)."""

from __future__ import annotations

import argparse

import pytest

from salesmesh import cli


def _commands() -> list[list[str]]:
    parser = cli.build_parser()
    found: list[list[str]] = [[]]
    for action in parser._actions:  # argparse keeps its subparsers here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append([name])
                for inner in sub._actions:
                    if isinstance(inner, argparse._SubParsersAction):
                        found += [[name, deeper] for deeper in inner.choices]
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "salesmesh")
def test_help_prints(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints a usage line and exits 0."""
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: salesmesh")
