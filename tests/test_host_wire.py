"""The reference host's wire limits: deep nesting, long lines, blank lines, sources no command can take.

Each is tried through the real host process (``python -m codemode_store.host``)
as a Core would send it, and the next request must still be served; the
in-process ``Host`` is tried where a Python caller could go further than a
line can (an object nested deeper than any JSON parser would build).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from test_host import run_reference_host

from codemode_store import ObservationStore
from codemode_store.host import CommandRuntime, Host, serve
from codemode_store.host.lines import MAX_DEPTH, MAX_LINE_BYTES, LongLine, bounded_lines

NEXT = '{"id": "next", "op": "create", "cell_id": "after", "source": "true"}'
SERVED = {"id": "next", "ok": {"cell_id": "after"}}


def answers_of(done: Any) -> list[Any]:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


def test_deep_lines_deep_ids_and_odd_numbers_are_invalid_input_and_the_next_line_is_served(
    tmp_path: Path,
) -> None:
    deep = [nested(1000), nested(100_000), "{" * 1000, '{"a":' * 100_000 + "1" + "}" * 100_000]
    deep_ids = [
        '{"id": ' + nested(depth) + ', "op": "release", "cell_id": "c", "generation": 0}'
        for depth in (MAX_DEPTH, 1000, 100_000)
    ]
    numbers = [
        '{"id": NaN, "op": "close", "cell_id": "c"}',
        '{"id": 1e400, "op": "close", "cell_id": "c"}',
        '{"id": -Infinity, "op": "close", "cell_id": "c"}',
    ]
    # The request object is level 1: its id may nest MAX_DEPTH - 1 levels.
    at_limit = '{"id": ' + nested(MAX_DEPTH - 1) + ', "op": "release", "cell_id": "c", "generation": 0}'
    refused = [*deep, *deep_ids, *numbers]

    answers = answers_of(run_reference_host(tmp_path / "h.db", *refused, at_limit, NEXT))

    assert len(answers) == len(refused) + 2
    for answer in answers[: len(refused)]:
        assert answer["id"] is None and answer["error"]["code"] == "InvalidInput", answer
    assert "nested deeper than 64 levels" in answers[0]["error"]["message"]
    assert answers[-2]["id"] == json.loads(nested(MAX_DEPTH - 1))
    assert answers[-2]["error"]["code"] == "UnknownCell"
    assert answers[-1] == SERVED


def _line_of(size: int) -> str:
    """A release request exactly ``size`` bytes long, its id a padded string."""
    frame = '{"id": "", "op": "release", "cell_id": "c", "generation": 0}'
    return frame.replace('""', '"' + "x" * (size - len(frame)) + '"')


def test_a_line_at_the_size_limit_is_served_and_a_longer_one_is_invalid_input(tmp_path: Path) -> None:
    at_limit, over = _line_of(MAX_LINE_BYTES), _line_of(MAX_LINE_BYTES + 1)
    assert len(at_limit) == MAX_LINE_BYTES and len(over) == MAX_LINE_BYTES + 1

    answers = answers_of(run_reference_host(tmp_path / "h.db", at_limit, over, NEXT))

    assert len(answers) == 3
    assert answers[0]["error"]["code"] == "UnknownCell"  # parsed and answered
    assert len(answers[0]["id"]) == len(at_limit) - len(_line_of(0))
    assert answers[1]["id"] is None and answers[1]["error"]["code"] == "InvalidInput"
    assert f"{MAX_LINE_BYTES + 1} bytes long; at most {MAX_LINE_BYTES}" in answers[1]["error"]["message"]
    assert answers[2] == SERVED


def test_a_long_line_is_skipped_without_being_read_whole() -> None:
    stream = io.BytesIO(b"y" * (3 * MAX_LINE_BYTES) + b"\n" + b"z" * (MAX_LINE_BYTES + 5) + b"last")
    lines = list(bounded_lines(stream))
    assert [type(line) for line in lines] == [LongLine, LongLine]
    assert [line.size for line in lines if isinstance(line, LongLine)] == [
        3 * MAX_LINE_BYTES,
        MAX_LINE_BYTES + 9,
    ]


def test_blank_lines_get_no_answer_and_every_other_line_gets_one(tmp_path: Path) -> None:
    lines = [
        "",
        '{"id": 1, "op": "create", "cell_id": "c", "source": "true"}',
        "   ",
        "\t\r",
        "\x0c",  # not JSON whitespace: not blank, not JSON
        '{"id": 2, "op": "close", "cell_id": "c"}',
        "",
    ]
    answers = answers_of(run_reference_host(tmp_path / "h.db", *lines))
    assert [a["id"] for a in answers] == [1, None, 2]
    assert answers[1]["error"]["code"] == "InvalidInput"
    assert answers[2] == {"id": 2, "ok": {"closed": "c"}}


def test_a_source_no_command_can_take_is_refused_before_the_cell_is_registered(tmp_path: Path) -> None:
    sources = {"surrogate": "echo \ud800", "nul": "echo a\x00b", "low": "\udfff"}
    lines = []
    for cell, source in sources.items():
        lines.append(json.dumps({"id": f"bad-{cell}", "op": "create", "cell_id": cell, "source": source}))
        lines.append(json.dumps({"id": cell, "op": "create", "cell_id": cell, "source": f"echo {cell}"}))
    lines.append('{"id": "o", "op": "observe", "cell_id": "nul", "generation": 0, "yield_time_ms": 5000}')

    answers = answers_of(run_reference_host(tmp_path / "h.db", *lines))

    words = {"surrogate": "lone surrogate", "nul": "NUL", "low": "lone surrogate"}
    for index, cell in enumerate(sources):
        bad, retried = answers[2 * index], answers[2 * index + 1]
        assert bad["error"]["code"] == "InvalidInput" and words[cell] in bad["error"]["message"], bad
        assert retried == {"id": cell, "ok": {"cell_id": cell}}  # not DuplicateCell: nothing was written
    assert answers[-1]["ok"]["content_items"] == [{"type": "input_text", "text": "nul\n"}]


def _deep_object(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_the_host_object_api_refuses_any_depth_and_handle_line_never_raises(tmp_path: Path) -> None:
    with ObservationStore.open(tmp_path / "h.db") as store, CommandRuntime() as runtime:
        host = Host(store, runtime, "s")
        for depth in (MAX_DEPTH, 1000, 100_000):
            answer = host.handle({"id": _deep_object(depth), "op": "close", "cell_id": "c"})
            assert answer["id"] is None and answer["error"]["code"] == "InvalidInput"
        for line in (nested(100_000), nested(100_000).encode(), "", b"\xff\xfe", "\ud800"):
            assert json.loads(host.handle_line(line))["error"]["code"] == "InvalidInput"
        out = io.BytesIO()
        assert serve(host, [nested(100_000).encode() + b"\n", b"\n", NEXT.encode() + b"\n"], out) == 2
        assert json.loads(out.getvalue().splitlines()[1]) == SERVED
