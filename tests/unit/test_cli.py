"""The CLI's commands and their help, in this process. As processes of their own:
tests/integration/test_cli.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from everloop.cli import main

COMMANDS = ["dev", "services", "api", "worker", "migrate", "check", "simulator", "rotate-secrets"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert f"Usage: main {command}" in result.output or f"Usage: everloop {command}" in result.output
    assert len(result.output.splitlines()) > 3


def test_top_level_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
