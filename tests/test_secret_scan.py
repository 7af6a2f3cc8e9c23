"""`flowledger scan-secrets`: the events an older release stored with a secret today's
redaction rules find are listed, where and as today's rules would store them, and never the
secret; what any way in appends today is never listed. The contract runs on each backend."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.cli import cli
from flowledger.domain.redaction import REDACTED, Redactor
from flowledger.domain.vocabulary import stream_of, validate_event
from flowledger.projections.projector import Projector
from flowledger.secret_scan import FoundField, scan_secrets
from flowledger.store import open_log
from flowledger.store.log import Candidate
from tests.conftest import POSTGRES_UNREACHABLE, ev, login_role, triggered
from tests.histories import jsonl
from tests.test_redaction_text import _KNOWN, _PROSE, _SECRET, _SECRET_NAMES, _TEXTS, PLANTED, _spellings, planted_events


def stored_as_an_older_release_did(log, events):
    """Append events validated but not redacted: what a release whose rules missed their
    secrets stored."""
    bodies = [validate_event(e) for e in events]
    log.append([[Candidate.make(b, stream_of(b)) for b in bodies]])


def a_store_an_older_release_wrote(url, events):
    """Make a store at ``url`` holding ``events`` as :func:`stored_as_an_older_release_did` stores them."""
    log = open_log(url, create=True)
    try:
        stored_as_an_older_release_did(log, events)
    finally:
        log.close()


def held_as_an_older_release_did(log, fact, provider_id):
    """Hold a provider fact, validated but not redacted, for a message not known yet."""
    result = log.append_provider_events([(validate_event(fact), provider_id)], "2026-11-01T10:00:00.000000Z")
    assert result.held == 1


def _fact(event_id, **fields):
    return ev("message.bounced", id=event_id, provider="sendgrid", message_id=f"sg-{event_id}", **fields)


def _secrets_in(text):
    return [s for s in PLANTED.values() if s in text]


class SecretScanContract:
    """A subclass provides ``store_url``: a fresh, empty store."""

    @pytest.fixture
    def log(self, store_url):
        log = open_log(store_url, create=True)
        yield log
        log.close()

    def test_events_an_older_release_stored_with_secrets_are_found_where_and_as_todays_rules_store_them(self, log):
        stored_as_an_older_release_did(log, planted_events())
        scan = ledger.scan_secrets(log, Redactor())
        assert scan.events_read == 8 and scan.held_read == 0
        found = {f.event_id: f for f in scan.findings}
        # Every event holding a planted secret, and only those (run.started and message.queued hold none).
        assert scan.found == len(scan.findings) == 6
        kinds = {f.type: {p.path for p in f.fields} for f in scan.findings}
        assert kinds == {
            "run.triggered": {"data.callback"},
            "step.started": {"request.url"},
            "message.clicked": {"url"},
            "message.failed": {"error"},
            "step.failed": {"error"},
            "run.failed": {"error.message", "error.body"},
        }
        clicked = next(f for f in scan.findings if f.type == "message.clicked")
        assert clicked.fields[0].redacted == (
            "https://user:[REDACTED]@app.example.com/reset?token=[REDACTED]&utm_source=mail"
        )
        assert clicked.message_id == "m1" and clicked.run_id is None
        failed = next(f for f in scan.findings if f.type == "step.failed")
        assert failed.run_id == "r1" and failed.fields[0].redacted == "401 from provider: Authorization: Bearer [REDACTED]"
        # In log order, with their positions; each found place is what redact_event stores there.
        positions = [f.position for f in scan.findings]
        assert positions == sorted(positions) and len(set(positions)) == 6
        for f in found.values():
            assert f.fields and all(REDACTED in str(p.redacted) for p in f.fields)
        assert _secrets_in(orjson.dumps(scan.to_dict()).decode()) == []

    def test_what_every_way_in_appends_today_is_never_found(self, log):
        ledger.append_input(log, jsonl(planted_events()))
        ledger.retry_run(log, "r1", reason=f"token={PLANTED['query']} was revoked")
        ledger.append_input(log, jsonl([_fact("b1", reason=f"550 rejected: password:{PLANTED['password']}")]))
        # A provider's export, for a message not known: held, redacted as it came in.
        export = [{"event": "bounce", "sg_event_id": "sg-1", "sg_message_id": "unknown.filter0001", "timestamp": 1793523600,
                   "email": "u@example.com", "reason": f"550 rejected: api_key: {PLANTED['form']}"}]
        ledger.append_export(log, "sendgrid", orjson.dumps(export))
        scan = ledger.scan_secrets(log, Redactor())
        assert (scan.events_read, scan.held_read) == (10, 1)
        assert scan.found == 0 and scan.findings == []

    def test_a_provider_event_held_for_its_message_is_found_too(self, log):
        stored_as_an_older_release_did(log, [triggered("r1")])
        held_as_an_older_release_did(log, _fact("b1", reason=f"550 rejected: password:{PLANTED['password']}"), "sg-b1")
        held_as_an_older_release_did(log, _fact("b2", reason="550 mailbox full"), "sg-b2")
        scan = ledger.scan_secrets(log, Redactor())
        assert (scan.events_read, scan.held_read, scan.found) == (1, 2, 1)
        (finding,) = scan.findings
        assert (finding.position, finding.event_id, finding.type) == (None, "b1", "message.bounced")
        assert finding.fields == (FoundField("reason", "550 rejected: password:[REDACTED]", len("550 rejected: password:")),)
        assert finding.to_dict()["held"] is True

    def test_every_event_found_is_counted_and_the_first_listed_page_by_page(self, log):
        events = [triggered(f"r{i}") for i in range(7)]
        events += [ev("run.failed", run_id=f"r{i}", error=f"api_key: {PLANTED['query']}{i}") for i in range(0, 7, 2)]
        stored_as_an_older_release_did(log, events)
        whole = scan_secrets(log, Redactor(), limit=1000, page_size=1000)
        paged = scan_secrets(log, Redactor(), limit=1000, page_size=2)
        assert whole == paged
        assert whole.found == 4 and [f.run_id for f in whole.findings] == ["r0", "r2", "r4", "r6"]
        first = scan_secrets(log, Redactor(), limit=2, page_size=3)
        assert first.found == 4 and first.findings == whole.findings[:2] and first.events_read == 11

    def test_events_appended_while_it_reads_are_left_to_todays_rules(self, log, monkeypatch):
        stored_as_an_older_release_did(log, [triggered(f"r{i}", data={"note": f"token: {PLANTED['query']}"}) for i in range(5)])
        select_page, appended = log.backend.select_page, []

        def appending_meanwhile(c, after, limit, topics=None):
            if not appended:  # another process appends as the scan reads its first page
                other = open_log(log.backend.reopen_url())
                try:
                    stored_as_an_older_release_did(other, [triggered(f"late{i}", data={"note": "token: x1y2z3w4"}) for i in range(3)])
                finally:
                    other.close()
                appended.append(True)
            return select_page(c, after, limit, topics)

        monkeypatch.setattr(log.backend, "select_page", appending_meanwhile)
        pages = []
        scan = scan_secrets(log, Redactor(), page_size=3, progress=pages.append)
        assert pages == [3, 2]  # of the events read, none past the end it began with
        assert appended and ledger.head(log) > 5
        assert (scan.events_read, scan.found) == (5, 5)
        assert {f.run_id for f in scan.findings} == {f"r{i}" for i in range(5)}

    def test_a_log_shorter_than_its_last_position_said_ends_the_scan(self, log, monkeypatch):
        stored_as_an_older_release_did(log, [triggered("r1", data={"note": f"token: {PLANTED['query']}"})])
        head = ledger.head(log)
        monkeypatch.setattr(log.backend, "max_position", lambda c: head + 10)
        scan = scan_secrets(log, Redactor(), page_size=1)
        assert (scan.events_read, scan.found) == (1, 1)

    def test_keys_added_to_the_rules_find_their_values_too(self, log):
        stored_as_an_older_release_did(log, [triggered("r1", data={"customer": {"ssn": "078-05-1120"}})])
        assert ledger.scan_secrets(log, Redactor()).found == 0
        scan = ledger.scan_secrets(log, Redactor(extra=["ssn"]))
        assert [(p.path, p.redacted) for p in scan.findings[0].fields] == [("data.customer.ssn", REDACTED)]

    def test_a_place_is_named_by_its_keys_quoted_where_they_are_no_plain_names(self, log):
        data = {"customer record": {"token": 12345}, "api.key": {"nested": True}, "list": [{"Cookie": "a=1"}]}
        stored_as_an_older_release_did(log, [triggered("r1", data=data)])
        (finding,) = ledger.scan_secrets(log, Redactor()).findings
        # Keys as stored (in order); a value that was no text is replaced whole.
        assert [(p.path, p.redacted, p.at) for p in finding.fields] == [
            ('data["api.key"]', REDACTED, 0),
            ('data["customer record"].token', REDACTED, 0),
            ("data.list[0].Cookie", REDACTED, 0),
        ]


class TestSecretScanSQLite(SecretScanContract):
    @pytest.fixture
    def store_url(self, tmp_path):
        return str(tmp_path / "scan.db")


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
class TestSecretScanPostgres(SecretScanContract):
    @pytest.fixture
    def store_url(self, postgres_url):
        return postgres_url


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_a_postgresql_role_that_may_only_read_scans(postgres_url):
    a_store_an_older_release_wrote(postgres_url, planted_events())
    grants = ['GRANT USAGE ON SCHEMA "{schema}" TO "{role}"', 'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"']
    with login_role(postgres_url, "fl_scan_", grants) as (_, url):
        result = _run(url, "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["found"] == 6


def test_a_places_excerpt_is_one_line_around_where_it_first_differs():
    text = "x" * 100 + "password:[REDACTED]\n" + "y" * 100
    place = FoundField("error", text, 100)
    assert place.excerpt(40) == "…" + "x" * 13 + "password:[REDACTED]\\n" + "y" * 7 + "…"
    assert FoundField("error", "token: [REDACTED]", 7).excerpt() == "token: [REDACTED]"
    assert FoundField("data.token", REDACTED, 0).excerpt() == REDACTED
    assert FoundField("data.pair", ["token", REDACTED], 0).excerpt() == '["token","[REDACTED]"]'


# --- The command ------------------------------------------------------------------------


def _run(store, *args, env=None):
    return CliRunner().invoke(cli, ["--store", store, "scan-secrets", *args], env=env or {})


def test_the_command_lists_each_place_and_never_prints_a_secret(store_path):
    a_store_an_older_release_wrote(store_path, planted_events())
    result = _run(store_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["position", "type", "event", "id", "field", "as", "today's", "rules", "store", "it"]
    assert len(lines) == 1 + 7 + 1  # a row a place found, then the summary
    assert any(l.split()[:4] == ["5", "message.clicked", "t-" + l.split()[2][2:], "url"] for l in lines[1:-1])
    assert "error.body" in result.output and "client_secret=[REDACTED]" in result.output
    assert lines[-1] == (
        "Read 8 events and 0 provider events held for their message: 6 events hold text today's redaction "
        "rules would store differently. The log cannot be edited: rotate the credentials those places held."
    )
    assert _secrets_in(result.output) == []
    as_json = _run(store_path, "--json", "--limit", "2")
    assert as_json.exit_code == 0
    shown = orjson.loads(as_json.output)
    assert (shown["events_read"], shown["found"], shown["listed"]) == (8, 6, 2)
    assert [f["type"] for f in shown["findings"]] == ["run.triggered", "step.started"]
    assert shown["findings"][0]["fields"] == [
        {"path": "data.callback", "redacted": "https://hooks.example.com/cb?api_key=[REDACTED]&x=1"}
    ]
    assert _secrets_in(as_json.output) == []
    short = _run(store_path, "--limit", "1")
    assert short.output.splitlines()[-1].startswith(
        "Read 8 events and 0 provider events held for their message: 6 events hold text today's redaction "
        "rules would store differently (the first 1 listed; --limit lists more)."
    )


def test_the_command_prints_what_readmes_entry_shows(store_path):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    at = dict(occurred_at="2026-11-01T09:00:00Z")
    older = [
        {"id": "e1", "type": "run.triggered", "run_id": "r1", "workflow": "w", "recipient": "u", **at},
        {"id": "e2", "type": "run.started", "run_id": "r1", **at},
        {"id": "e2b", "type": "step.started", "run_id": "r1", "step": "crm", "step_type": "http", "attempt": 1, **at},
        {"id": "e2c", "type": "step.started", "run_id": "r1", "step": "crm", "step_type": "http", "attempt": 2, **at},
        {"id": "e3", "type": "step.failed", "run_id": "r1", "step": "crm", "step_type": "http", "attempt": 1, **at,
         "error": "login failed: password:hunter2 for app\nsecond line",
         "request": {"headers": {"X": "<password>s3cret</password>"}, "list": [1, "token:abcdef123"]}},
        {"id": "e4", "type": "message.queued", "message_id": "m1", "channel": "email", "recipient": "u", "run_id": "r1",
         "step": "crm", **at},
        {"id": "e5", "type": "message.clicked", "message_id": "m1", **at,
         "url": "https://t.example/c?u=https%3A%2F%2Fapp%2Freset%3Ftoken%3Dabc"},
    ]
    log = open_log(store_path, create=True)
    try:
        stored_as_an_older_release_did(log, older)
        # And one through today's rules: stored redacted, so not listed.
        failed = {"id": "e6", "type": "step.failed", "run_id": "r1", "step": "crm", "step_type": "http", "attempt": 2,
                  **at, "error": "password:hunter2"}
        ledger.append_input(log, jsonl([failed]))
    finally:
        log.close()
    result = _run(store_path)
    assert result.exit_code == 0
    assert "\n```\n" + result.stdout + "```\n" in readme
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout and "abcdef123" not in result.stdout


def _on_a_terminal(*args):
    """Run the CLI with standard error on a terminal (a pty): what it showed there, and the
    finished process (its standard output captured)."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from flowledger.cli import main; main()", *args],
            stdout=subprocess.PIPE, stderr=follower, timeout=120, check=False,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break  # the terminal's other end closed: all read
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return shown, done


def test_the_command_shows_its_progress_on_a_terminal(store_path):
    a_store_an_older_release_wrote(store_path, planted_events())
    shown, done = _on_a_terminal("--store", store_path, "scan-secrets")
    assert done.returncode == 0
    assert b"Scanning" in shown and b"100%" in shown
    assert b"6 events hold" in done.stdout
    assert _secrets_in((shown + done.stdout).decode(errors="replace")) == []
    # The same bar as a rebuild's.
    shown, done = _on_a_terminal("--store", store_path, "rebuild")
    assert done.returncode == 0 and b"Rebuilding" in shown and b'"events":8' in done.stdout


def test_the_command_takes_added_keys_from_its_option_and_the_environment(store_path):
    a_store_an_older_release_wrote(store_path, [triggered("r1", data={"ssn": "078-05-1120", "pin": "4321"})])
    assert _run(store_path).output.strip() == (
        "Read 1 event and 0 provider events held for their message: none holds text today's redaction rules "
        "would store differently."
    )
    both = orjson.loads(_run(store_path, "--json", "--redact-key", "ssn", env={"FLOWLEDGER_REDACT_KEYS": "pin"}).output)
    assert [p["path"] for p in both["findings"][0]["fields"]] == ["data.pin", "data.ssn"]  # as stored: keys in order
    assert "078-05-1120" not in _run(store_path, "--redact-key", "ssn").output


def test_an_analysts_copy_is_refused_and_a_missing_store_is_an_error(store_path, tmp_path):
    log = open_log(store_path, create=True)
    try:
        ledger.append_input(log, jsonl([triggered("r1")]))
    finally:
        log.close()
    copy = str(tmp_path / "copy.db")
    assert CliRunner().invoke(cli, ["--store", store_path, "rebuild", "--into", copy]).exit_code == 0
    refused = _run(copy)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "analyst's copy" in refused.output and f"flowledger --store {store_path} scan-secrets" in refused.output
    missing = _run(str(tmp_path / "nothing.db"))
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    assert not (tmp_path / "nothing.db").exists()


def test_with_fail_a_find_exits_3_after_printing_it_and_none_found_exits_0(store_path, tmp_path):
    a_store_an_older_release_wrote(store_path, planted_events())
    plain, failing = _run(store_path), _run(store_path, "--fail")
    assert (plain.exit_code, failing.exit_code) == (0, 3)
    assert failing.output == plain.output and "6 events hold text" in failing.output  # printed whole first
    as_json = _run(store_path, "--fail", "--json")
    assert as_json.exit_code == 3 and orjson.loads(as_json.output)["found"] == 6
    clean = str(tmp_path / "clean.db")
    log = open_log(clean, create=True)
    try:
        ledger.append_input(log, jsonl(planted_events()))  # today's rules: nothing to find
    finally:
        log.close()
    assert _run(clean, "--fail").exit_code == 0 and _run(clean, "--fail", "--json").exit_code == 0
    # An error is still an error's 1, never taken for a find; a usage error 2.
    missing = _run(str(tmp_path / "nothing.db"), "--fail")
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert _run(store_path, "--fail=yes").exit_code == 2


def test_the_installed_command_exits_3_on_a_find_with_fail(store_path):
    a_store_an_older_release_wrote(store_path, planted_events())
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "flowledger"), "--store", store_path, "scan-secrets", "--fail"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "6 events hold text" in done.stdout and done.stderr == ""
    assert _secrets_in(done.stdout) == []


def test_the_scan_only_reads(store_path):
    log = open_log(store_path, create=True)
    try:
        stored_as_an_older_release_did(log, planted_events())
        before = (ledger.head(log), Projector(log.backend).position(Projector(log.backend).views[0]))
        ledger.scan_secrets(log, Redactor())
        assert (ledger.head(log), Projector(log.backend).position(Projector(log.backend).views[0])) == before
    finally:
        log.close()


# --- Property ---------------------------------------------------------------------------

# Random fragments (a few hold what the rules find), and prose with a secret written into it.
_ERRORS = st.one_of(
    _TEXTS,
    st.tuples(_PROSE, st.sampled_from(_SECRET_NAMES).flatmap(_spellings), st.sampled_from(["=", ": ", ":", " = "]), _SECRET, _PROSE).map("".join),
    st.tuples(_PROSE, _KNOWN, _PROSE).map(" ".join),
).filter(str.strip)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(st.tuples(_ERRORS, st.booleans()), min_size=1, max_size=12))
def test_the_scan_finds_exactly_the_events_todays_rules_would_change_and_where(tmp_path_factory, texts):
    # Each text an error, as text or inside an object: an older release stored it as given.
    events = []
    for i, (text, in_object) in enumerate(texts):
        events += [triggered(f"r{i}"), ev("run.failed", run_id=f"r{i}", error={"detail": [text]} if in_object else text)]
    log = open_log(str(tmp_path_factory.mktemp("scan") / "s.db"), create=True)
    try:
        stored_as_an_older_release_did(log, events)
        scan = scan_secrets(log, Redactor(), page_size=5)
    finally:
        log.close()
    r = Redactor()
    expected = []
    for i, (text, in_object) in enumerate(texts):
        clean = r.redact_text(text)
        if clean != text:
            expected.append((f"r{i}", "error.detail[0]" if in_object else "error", clean))
    assert scan.found == len(expected)
    assert [(f.run_id, f.fields[0].path, f.fields[0].redacted) for f in scan.findings] == expected
    for f in scan.findings:
        place = f.fields[0]
        text = texts[int(f.run_id[1:])][0]
        # Where it first differs is where the stored text and today's part ways.
        assert text[: place.at] == place.redacted[: place.at]
        assert place.at == len(text) or place.at == len(place.redacted) or text[place.at] != place.redacted[place.at]
