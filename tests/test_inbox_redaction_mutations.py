"""Tests that pin behaviour of the webhook inbox (flowledger/store/inbox.py) and of redaction
(flowledger/domain/redaction.py) which a mutation review found unchecked: each kills at least
one mutant that the rest of the suite let live (named in its docstring)."""

from __future__ import annotations

import pytest

from flowledger import ledger
from flowledger.domain.redaction import Redactor
from flowledger.domain.vocabulary import validate_event
from tests.conftest import ev, step, triggered
from tests.histories import jsonl

R = Redactor()


# --- redaction: URLs ------------------------------------------------------------------


def test_a_password_holding_an_at_sign_is_redacted_whole():
    """The authority's last "@" ends the password (mutant: the first one, which leaks the rest)."""
    assert R.redact_url("postgresql://app:p@ss@db.example.com/prod") == "postgresql://app:[REDACTED]@db.example.com/prod"
    assert R.redact_text("dsn postgresql://app:p@ss@db/prod failed") == "dsn postgresql://app:[REDACTED]@db/prod failed"


def test_a_secret_query_parameter_before_a_fragment_is_redacted():
    """The query is looked into from its first "?" or "#", whichever comes first (mutant: the
    later one, which skips a secret query parameter of a URL that has a fragment too)."""
    assert R.redact_url("https://x.example/cb?token=abc123#section") == "https://x.example/cb?token=[REDACTED]#section"
    clicked = validate_event(ev("message.clicked", message_id="m1", url="https://x.example/r?api_key=k1#top"))
    assert R.redact_event(clicked)["url"] == "https://x.example/r?api_key=[REDACTED]#top"


def test_a_secret_parameter_inside_a_value_replaced_already_is_not_replaced_twice():
    """A "?name=" inside a value replaced is part of it (mutant: "[REDACTED][REDACTED]")."""
    assert R.redact_url("https://x.example/?token=abc?password=x&y=1") == "https://x.example/?token=[REDACTED]&y=1"


def test_an_empty_password_in_a_url_stays_empty():
    """Nothing to hide: "user:@host" is kept byte for byte (mutant: "user:[REDACTED]@host")."""
    url = "https://user:@host.example/x"
    assert R.redact_url(url) is url


def test_an_event_url_is_redacted_as_a_url_to_its_parameters_end():
    """An event's url field is a URL: a secret parameter's value runs to the next & ; or #,
    spaces and quotes included (mutant: the url read as free text, whose URL ends at a space
    or a quote, leaking the rest of the value)."""
    for url in ("https://app.example.com/r?token=abc def&u=1", 'https://app.example.com/r?token=abc"def&u=1'):
        clicked = validate_event(ev("message.clicked", message_id="m1", url=url))
        assert R.redact_event(clicked)["url"] == "https://app.example.com/r?token=[REDACTED]&u=1"


# --- redaction: text ------------------------------------------------------------------


def test_an_authorization_headers_credential_is_redacted_even_if_it_looks_like_a_word():
    """After an Authorization header's scheme word every credential goes, an all-capitals or
    all-lower-case one too (mutant: it is kept as "one ordinary word", as after "password:")."""
    assert R.redact_text("Authorization: Basic QUJDREVG") == "Authorization: Basic [REDACTED]"
    assert R.redact_text("Authorization: token abcdefgh") == "Authorization: token [REDACTED]"
    assert R.redact_text("Authorization: Bearer abcdefgh") == "Authorization: Bearer [REDACTED]"


def test_a_set_cookie_headers_value_runs_to_its_lines_end():
    """A Set-Cookie header's value is secret to its line's end, as a Cookie header's is
    (mutant: only Cookie's; a folded "Set-Cookie: a=1, b=2" leaks b's value)."""
    assert R.redact_text("Set-Cookie: sid=abc123, remember=xyz789\nnext") == "Set-Cookie: [REDACTED]\nnext"


def test_a_quoted_keys_value_after_an_equals_sign_and_a_space_is_redacted():
    """'"token"= value' (a quoted key, "=", spaces): the spaces are skipped (mutant: the value
    is not found and is kept)."""
    assert R.redact_text('"token"= "abc123"') == '"token"= "[REDACTED]"'
    assert R.redact_text('"token"= abc123') == '"token"= "[REDACTED]"'


def test_an_empty_quoted_value_under_a_quoted_secret_key_stays_empty():
    """An empty secret hides nothing, and shows that none was sent (mutant: '"[REDACTED]"')."""
    text = '{"token": "", "password": ""}'
    assert R.redact_text(text) is text


# --- redaction: objects and events -----------------------------------------------------


def test_a_header_list_entry_naming_its_header_under_key_has_its_value_redacted():
    """{"key": "X-Api-Key", "value": "..."} is a header pair as {"name": …} is (mutant: only
    name and header name it, and the value, a bare token, is kept)."""
    event = validate_event(triggered("r1", data={"headers": [{"key": "X-Api-Key", "value": "abc123"}]}))
    assert R.redact_event(event)["data"] == {"headers": [{"key": "X-Api-Key", "value": "[REDACTED]"}]}


def test_a_null_under_a_secret_key_stays_null():
    """null under a secret key holds nothing: kept, so that "no token" stays distinguishable
    from "a token" (mutant: it becomes "[REDACTED]")."""
    event = validate_event(triggered("r1", data={"token": None, "password": "p1"}))
    assert R.redact_event(event)["data"] == {"token": None, "password": "[REDACTED]"}


def test_free_form_fields_holding_a_list_are_redacted_before_they_are_stored(log, store_path):
    """request/response/output may be JSON arrays: their secrets are redacted too (mutant: only
    objects and strings are looked into, and a list's secrets reach the log)."""
    secret = "sk_live_list0123456789"
    events = [
        triggered("r1"),
        ev("run.started", run_id="r1"),
        step("step.started", "r1"),
        step(
            "step.succeeded",
            "r1",
            request=[{"token": secret}, "Authorization: Bearer " + secret],
            response=[["Authorization", "Bearer " + secret]],
            output=[{"nested": {"password": secret}}],
        ),
    ]
    ledger.append_input(log, jsonl(events))
    body = log.run_events("r1")[3].body
    assert body["request"] == [{"token": "[REDACTED]"}, "Authorization: Bearer [REDACTED]"]
    assert body["response"] == [["Authorization", "[REDACTED]"]]
    assert body["output"] == [{"nested": {"password": "[REDACTED]"}}]
    log.close()
    import os

    raw = b"".join(open(store_path + s, "rb").read() for s in ("", "-wal") if os.path.exists(store_path + s))
    assert secret.encode() not in raw


# --- the inbox ------------------------------------------------------------------------


def _items(n: int, tag: str) -> list:
    """n prepared facts (any JSON body will do for the inbox itself)."""
    return [({"id": f"{tag}-{i}", "type": "message.delivered", "message_id": f"m-{tag}-{i}"}, f"p-{tag}-{i}") for i in range(n)]


def test_two_processes_putting_at_once_both_keep_their_facts(tmp_path):
    """A put takes the inbox's write lock when it begins (BEGIN IMMEDIATE), so that another
    process's put committed meanwhile makes it wait, not fail (mutant: a deferred BEGIN reads
    first, then finds its snapshot stale at its INSERT and fails at once, "database is
    locked": the webhook's facts are lost, or a provider that never retries loses them)."""
    import threading

    from flowledger.store.inbox import SQLiteInbox

    path = str(tmp_path / "s.db.inbox")
    first, second = SQLiteInbox(path, lambda: "store-1"), SQLiteInbox(path, lambda: "store-1")
    try:
        first.put(_items(1, "a0"), "2026-11-01T09:00:00Z")
        second.put(_items(1, "b0"), "2026-11-01T09:00:00Z")  # both connections open, the count made
        started, finished, errors = threading.Event(), threading.Event(), []

        def other_put():
            started.set()
            try:
                second.put(_items(2, "b1"), "2026-11-01T09:00:02Z")
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            finally:
                finished.set()

        claim = first._claim

        def claim_then_let_the_other_put(c, store_id, at):
            found = claim(c, store_id, at)  # has read the inbox: its snapshot is taken
            threading.Thread(target=other_put).start()
            started.wait(10)
            finished.wait(0.5)  # the other put commits now where it can (it cannot: the lock is held)
            return found

        first._claim = claim_then_let_the_other_put
        first.put(_items(3, "a1"), "2026-11-01T09:00:01Z")
        first._claim = claim
        assert finished.wait(30)
        assert errors == []
        assert first.count() == second.count() == 1 + 1 + 3 + 2
        assert [len(d.items) for d in first.oldest(10)] == [1, 1, 3, 2]
    finally:
        first.close()
        second.close()


def test_the_inbox_file_is_in_wal_mode_with_synchronous_full(tmp_path):
    """An acknowledged webhook's facts must survive a power cut, as the log's do: the inbox's
    connection writes with synchronous=FULL (mutant: NORMAL, which may lose the last commits)."""
    from flowledger.store.inbox import SQLiteInbox

    inbox = SQLiteInbox(str(tmp_path / "s.db.inbox"), lambda: "store-1")
    try:
        inbox.put(_items(1, "a"), "2026-11-01T09:00:00Z")
        conn = inbox._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        inbox.close()


def test_postgresql_two_drains_setting_one_row_aside_at_once_both_succeed(postgres_url):
    """Two processes draining at once may both set one row aside: the first move stands and
    the second does nothing, without an error (mutant: no ON CONFLICT, and the second fails on
    the dead letters' key, its drain given up and logged as failed)."""
    import threading
    import time

    from flowledger.store import open_log
    from flowledger.store.inbox import open_inbox
    from flowledger.store.postgres import parse_url
    from tests.conftest import server_connection
    from tests.test_inbox import with_messages
    from tests.test_inbox_followups import put

    schema = parse_url(postgres_url)["schema"]
    with_messages(postgres_url)
    log = open_log(postgres_url)
    inbox = open_inbox(log.backend)
    hand = server_connection(postgres_url)
    try:
        put(inbox)
        put(inbox, facts=1)
        first, second = (d.seq for d in inbox.oldest(10))
        inbox.set_aside(first, "unreadable", "2026-11-01T09:00:00Z")  # makes the dead letters' table
        # Another process's set-aside of the second row, under way (not committed yet).
        hand.execute(f'SET search_path TO "{schema}"')
        hand_pid = hand.execute("SELECT pg_backend_pid()").fetchone()[0]
        hand.execute(
            "INSERT INTO webhook_dead_letters (seq, received_at, n, items, reason, set_aside_at) "
            "SELECT seq, received_at, n, items, 'unreadable', 'then' FROM webhook_inbox WHERE seq = %s",
            (second,),
        )
        hand.execute("DELETE FROM webhook_inbox WHERE seq = %s", (second,))
        errors: list[BaseException] = []

        def set_aside():
            try:
                inbox.set_aside(second, "unreadable", "2026-11-01T09:00:01Z")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        mover = threading.Thread(target=set_aside)
        mover.start()
        with server_connection(postgres_url, autocommit=True) as watcher:
            for _ in range(400):  # until this process's move waits for the other's
                blocked = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (hand_pid,))
                if blocked.fetchone()[0]:
                    break
                time.sleep(0.01)
        hand.commit()
        mover.join(30)
        assert not mover.is_alive()
        assert errors == []
        assert [letter["seq"] for letter in inbox.dead_letters(10)] == [first, second]
        assert inbox.count() == 0
    finally:
        hand.close()
        inbox.close()
        log.close()


def test_an_inbox_table_dropped_by_hand_fails_one_read_then_reads_find_an_empty_inbox(tmp_path):
    """A failed statement closes the inbox's connection, and the next opens the file again,
    which makes the inbox's table: a server whose inbox table was dropped fails one read, not
    every webhook's from then on (mutant: the connection is kept, and every read, the
    "anything waiting?" each webhook asks first, fails until a write that never comes)."""
    import sqlite3

    from flowledger.errors import StoreError
    from flowledger.store.inbox import SQLiteInbox

    path = str(tmp_path / "s.db.inbox")
    inbox = SQLiteInbox(path, lambda: "store-1")
    try:
        inbox.put(_items(2, "a"), "2026-11-01T09:00:00Z")
        assert inbox.waiting()
        hand = sqlite3.connect(path)
        hand.execute("DROP TABLE webhook_inbox")
        hand.commit()
        hand.close()
        failed = 0
        for _ in range(3):
            try:
                assert inbox.waiting() is False
                assert inbox.oldest(10) == []
            except StoreError:
                failed += 1
        assert failed <= 1
        assert inbox.waiting() is False and inbox.count() == 0
        inbox.put(_items(1, "b"), "2026-11-01T09:00:01Z")
        assert inbox.count() == 1
    finally:
        inbox.close()


def test_an_inbox_held_by_another_process_is_busy_not_a_store_error(tmp_path, monkeypatch):
    """SQLite says "database is locked" when another process holds the inbox past the wait:
    that is StoreBusy (a 503 with Retry-After, which providers retry), not a StoreError (a 500)
    (mutant: only "busy" in the message is taken for busy)."""
    import sqlite3

    from flowledger.errors import StoreBusy
    from flowledger.store import inbox as inbox_module
    from flowledger.store.inbox import SQLiteInbox

    monkeypatch.setattr(inbox_module, "INBOX_LOCK_TIMEOUT", 0.1)
    path = str(tmp_path / "s.db.inbox")
    inbox = SQLiteInbox(path, lambda: "store-1")
    try:
        inbox.put(_items(1, "a"), "2026-11-01T09:00:00Z")
        hand = sqlite3.connect(path, isolation_level=None)
        hand.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusy):
                inbox.put(_items(1, "b"), "2026-11-01T09:00:01Z")
        finally:
            hand.execute("ROLLBACK")
            hand.close()
        inbox.put(_items(1, "b"), "2026-11-01T09:00:01Z")
        assert inbox.count() == 2
    finally:
        inbox.close()


def test_dead_letters_are_listed_oldest_first_up_to_the_limit(tmp_path):
    """`flowledger inbox` lists the oldest ``limit`` dead letters, oldest first (mutant: the
    newest, newest first)."""
    from flowledger.store.inbox import SQLiteInbox

    inbox = SQLiteInbox(str(tmp_path / "s.db.inbox"), lambda: "store-1")
    try:
        for i in range(3):
            inbox.put(_items(i + 1, f"w{i}"), f"2026-11-01T09:00:0{i}Z")
        seqs = [d.seq for d in inbox.oldest(10)]
        for seq in seqs:
            inbox.set_aside(seq, f"reason {seq}", "2026-11-01T10:00:00Z")
        letters = inbox.dead_letters(2)
        assert [letter["seq"] for letter in letters] == seqs[:2]
        assert [letter["n"] for letter in letters] == [1, 2]
        assert [letter["reason"] for letter in letters] == [f"reason {s}" for s in seqs[:2]]
        assert inbox.count() == 0
    finally:
        inbox.close()


def test_an_inbox_made_before_stores_had_ids_counts_its_facts_as_its_stores(tmp_path):
    """An inbox that records no store id (made by a flowledger before stores had ids) keeps
    facts for its store: they are counted, and not listed as another store's (mutant: they
    count as another store's, so `flowledger inbox` and /healthz show 0 waiting and lists them
    as to be set aside, while the drain appends them)."""
    from flowledger.store.inbox import SQLiteInbox

    path = str(tmp_path / "s.db.inbox")
    old = SQLiteInbox(path, lambda: None)  # records no id
    try:
        old.put(_items(3, "a"), "2026-11-01T09:00:00Z")
    finally:
        old.close()
    inbox = SQLiteInbox(path, lambda: "store-1")
    try:
        assert inbox.count() == 3
        assert inbox.dead_letters(10) == []
        assert [len(d.items) for d in inbox.oldest(10)] == [3]
    finally:
        inbox.close()


@pytest.mark.parametrize(
    "items",
    [
        b'[[{"id": "e1", "type": "message.delivered"}, "p1", "extra"]]',  # a triple
        b'[[{"id": "e1", "type": "message.delivered"}]]',  # no provider id
        b'[[{"id": "e1", "type": "message.delivered"}, 5]]',  # a provider id that is no string
        b'[[{"id": "e1", "type": "message.delivered"}, ["p1"]]]',
    ],
)
def test_a_row_whose_facts_are_not_event_and_provider_id_pairs_cannot_be_read(tmp_path, items):
    """A row of another layout (written by hand, or by another version) is read as a problem,
    to be set aside, never as facts (mutants: pairs' length or provider ids unchecked: the read
    raises, which stops every drain, or a provider id of another type reaches the log)."""
    import sqlite3

    from flowledger.store.inbox import SQLiteInbox

    path = str(tmp_path / "s.db.inbox")
    inbox = SQLiteInbox(path, lambda: "store-1")
    try:
        inbox.put(_items(1, "a"), "2026-11-01T09:00:00Z")
        hand = sqlite3.connect(path)
        hand.execute("INSERT INTO webhook_inbox (received_at, n, items) VALUES (?, 1, ?)", ("2026-11-01T09:00:01Z", items))
        hand.commit()
        hand.close()
        good, bad = inbox.oldest(10)
        assert good.problem is None and len(good.items) == 1
        assert bad.items == [] and "cannot be read" in (bad.problem or "")
    finally:
        inbox.close()


def test_postgresql_a_drain_before_any_put_mends_a_count_whose_trigger_was_dropped(postgres_url):
    """A process whose first inbox write is a delete (`flowledger project` draining) mends a
    count a hand broke before deleting, as a put does (mutant: the delete skips the set-up yet
    marks the count as kept, and the count shows the facts drained as still waiting)."""
    from flowledger.store import open_log
    from flowledger.store.inbox import open_inbox
    from tests.test_inbox_count import _in_inbox, _inbox_with_facts, _kept, _summed

    _inbox_with_facts(postgres_url)
    _in_inbox(postgres_url, "DROP TRIGGER webhook_inbox_counted ON {t}")
    log = open_log(postgres_url)
    inbox = open_inbox(log.backend)
    try:
        assert ledger.drain_inbox(log, inbox) == 8
        assert inbox.count() == _summed(postgres_url) == _kept(postgres_url) == 0
    finally:
        inbox.close()
        log.close()
