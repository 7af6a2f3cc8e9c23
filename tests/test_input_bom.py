"""Input that starts with a UTF-8 byte-order mark (as Windows tools write text) is read as
without it, JSON Lines and a JSON array alike; a problem still names its line."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from flowledger.cli import cli
from tests.conftest import ev, triggered

BOM = b"\xef\xbb\xbf"


def _append(store: str, data: bytes):
    return CliRunner().invoke(cli, ["--store", store, "append", "-"], input=data)


def test_json_lines_after_a_byte_order_mark_are_stored(store_path):
    lines = b"".join(orjson.dumps(e) + b"\n" for e in [triggered("r1"), ev("run.started", run_id="r1")])
    result = _append(store_path, BOM + lines)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["appended"] == 2


def test_a_json_array_after_a_byte_order_mark_is_read_as_an_array(store_path):
    result = _append(store_path, BOM + orjson.dumps([triggered("r1"), ev("run.started", run_id="r1")]))
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["appended"] == 2


def test_a_problem_after_a_byte_order_mark_names_its_line(store_path):
    result = _append(store_path, BOM + orjson.dumps(triggered("r1")) + b"\n{oops\n")
    assert result.exit_code == 1
    assert "line 2: not valid JSON" in result.stderr, result.stderr
    assert "line 1" not in result.stderr


def test_bytes_that_only_begin_like_a_byte_order_mark_are_not_taken_for_one(store_path):
    result = _append(store_path, b"\xef\xbb{}\n")
    assert result.exit_code == 1 and "line 1:" in result.stderr, result.output
