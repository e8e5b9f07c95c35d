"""Invoke the CLI in-process, checking its exit code."""

from __future__ import annotations

from click.testing import CliRunner, Result

from cli import main as cli_main


def cli(args: list[str], code: int = 0) -> Result:
    """Invoke the CLI; assert the exit code and that no exception escaped."""
    result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result
