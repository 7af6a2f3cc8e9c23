"""A store or an analyst's copy written by an older flowledger, opened by this one.

Releases from before copies were marked (no ``copy_of`` in ``flowledger_meta``) made
analyst's copies with ``rebuild --into`` all the same: views folded up to their source's
log position, and an empty log of their own. This version drops a view made by another
version and folds it again from the log; a copy has no log to fold from, so doing that
to such a copy threw its every run away and answered zeros, exit 0. README: "a copy made
by another version whose views changed is refused (exit 1, an API 409) with the command
that makes it again, and keeps its views until then."

The fixture is built with this version's code: a copy made by ``rebuild --into``, then
aged to what an older release left (its mark removed, older view versions stored), which
is what such a copy holds (checked by hand against copies made by releases 8c6b418,
ea07cb0 and 183c2fb of this repository).
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from click.testing import CliRunner

from flowledger.cli import cli

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "examples", "welcome-series.jsonl"))


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _aged_copy(tmp_path, versions: dict[str, str]) -> tuple[str, str]:
    """A store with the example appended, and a copy of it as an older release made it."""
    store, copy = str(tmp_path / "runs.db"), str(tmp_path / "copy.db")
    assert _invoke("--store", store, "append", EXAMPLE).exit_code == 0
    assert _invoke("--store", store, "rebuild", "--into", copy).exit_code == 0
    db = sqlite3.connect(copy)
    with db:
        db.execute("DELETE FROM flowledger_meta WHERE key = 'copy_of'")
        for view, version in versions.items():
            db.execute("UPDATE flowledger_meta SET value = ? WHERE key = ?", (version, f"view:{view}"))
    db.close()
    return store, copy


def _runs_rows(copy: str) -> int:
    db = sqlite3.connect(copy)
    try:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize(
    "versions",
    [
        {"runs": "1", "steps": "1", "deliveries": "2"},  # every view older (release 8c6b418)
        {"deliveries": "5"},  # runs and steps this version's, deliveries older
    ],
    ids=["every-view-older", "deliveries-older"],
)
@pytest.mark.parametrize("query", [["counts", "--json", "--no-catch-up"], ["counts", "--json"]])
def test_an_unmarked_copy_from_an_older_release_is_refused_and_keeps_its_views(tmp_path, versions, query):
    store, copy = _aged_copy(tmp_path, versions)
    expected = json.loads(_invoke("--store", store, "counts", "--json").output)
    assert expected["total"] > 0
    before = _runs_rows(copy)
    assert before > 0

    r = _invoke("--store", copy, *query)
    # Not zeros, exit 0: refused, saying how to make the copy again.
    assert r.exit_code == 1, r.output
    assert "rebuild --into" in r.output
    assert "Traceback" not in r.output
    # Its views are left as they were.
    assert _runs_rows(copy) == before

    # Made again by this version from its source, it answers as the source does.
    assert _invoke("--store", store, "rebuild", "--into", copy).exit_code == 0
    again = _invoke("--store", copy, "counts", "--json", "--no-catch-up")
    assert again.exit_code == 0 and json.loads(again.output) == expected


def test_a_store_of_an_older_release_with_its_log_is_still_folded_again(tmp_path):
    """The refusal is for views with no log under them: an older store is upgraded as ever."""
    store = str(tmp_path / "runs.db")
    assert _invoke("--store", store, "append", EXAMPLE).exit_code == 0
    expected = json.loads(_invoke("--store", store, "counts", "--json").output)
    db = sqlite3.connect(store)
    with db:
        for view, version in {"runs": "1", "steps": "1", "deliveries": "2"}.items():
            db.execute("UPDATE flowledger_meta SET value = ? WHERE key = ?", (version, f"view:{view}"))
    db.close()
    r = _invoke("--store", store, "counts", "--json")
    assert r.exit_code == 0 and json.loads(r.output) == expected
