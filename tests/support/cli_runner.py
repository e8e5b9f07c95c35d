"""Invoke the CLI in-process, checking its exit code; read a failed command's one error line."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result

from cli import main as cli_main


def cli(args: list[str], code: int = 0, **kwargs: Any) -> Result:
    """Invoke the CLI; assert the exit code and that no exception escaped."""
    result = CliRunner().invoke(cli_main, args, **kwargs)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def error_line(result: Result) -> str:
    """Return the one ``error:`` line of a failed command (nothing else on stderr, no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
