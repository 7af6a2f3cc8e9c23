"""A secret named by a key beside its value, written as text: a header list's entry quoted as
JSON or a repr (``{"name": "X-Api-Key", "value": …}``), a markup tag's attributes (``<add
key="Password" value="…"/>``, a form's hidden ``csrf_token``), a Kubernetes env entry as YAML;
redacted as the same entry given as an object is. And the channels' own keys known by their
form (Meta's WhatsApp tokens, a Telegram bot's, Twilio's SID:token), webhook signing
secrets, Google's OAuth tokens and an automation's other apps' tokens (Airtable, Notion,
Linear). Lookalikes are kept; an older release's copy resent is a duplicate, and
scan-secrets finds it."""

from __future__ import annotations

import json
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import REDACTED, Redactor
from flowledger.store.log import same_but_redacted
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_secret_scan import stored_as_an_older_release_did

R = Redactor()

_HEX = "0123456789abcdef" * 2
_ALNUM = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
META = "EAAG" + (_ALNUM * 4)[:120]
TELEGRAM = "7012345678:AAH" + "b3Xk_Qz-9LmN0pRsTuVwXyZaBcDeFgHi"  # A and 34 more
GOOGLE_REFRESH = "1//0gL" + (_ALNUM * 2)[:60]
TOKENS = [
    META,
    "EAAJ" + (_ALNUM * 3)[:79],  # the shortest: EAA and 80 more
    TELEGRAM,
    "whsec_" + _ALNUM[:32],  # Stripe's
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+/Kw==",  # Svix's (Resend, Clerk): base64
    "ya29.a0AfB_byC" + (_ALNUM * 3)[:100] + "-_x",
    GOOGLE_REFRESH,
    "GOCSPX-" + (_ALNUM + "_-")[:28],
    "patAbCdEfGhIjKlMn." + _HEX * 2,
    "ntn_12345678901" + _ALNUM[:35],
    "secret_" + (_ALNUM * 2)[:43],
    "lin_api_" + (_ALNUM * 2)[:40],
    "xoxe-1-" + (_ALNUM * 5)[:146],
]
FIXED_LENGTH = {t for t in TOKENS if t.startswith(("7012", "GOCSPX-", "pat", "ntn_", "secret_", "lin_api_"))}
TWILIO_SID, TWILIO_TOKEN = "AC" + _HEX, _HEX[::-1]
TWILIO_KEY_SID, TWILIO_KEY_SECRET = "SK" + _HEX.upper(), _ALNUM[1:33]  # no ":A" hint of its own


def assert_redacted_by_form(token: str, fixed_length: bool) -> None:
    """``token`` is redacted wherever it stands with no key before it (alone, in an error, in
    JSON, a command line, an env line, a call), twice the same; glued to a word it is kept."""
    for text, expected in [
        (token, REDACTED),
        (f"step whatsapp-1 failed: invalid token {token}.", f"step whatsapp-1 failed: invalid token {REDACTED}."),
        (f'{{"config": "{token}"}}', f'{{"config": "{REDACTED}"}}'),
        (f"curl -u {token} https://api.example.com", f"curl -u {REDACTED} https://api.example.com"),
        (f"HUB={token} MORE={token}", f"HUB={REDACTED} MORE={REDACTED}"),
        (f"client.run('{token}')", f"client.run('{REDACTED}')"),
    ]:
        assert R.redact_text(text) == expected
        assert R.redact_text(expected) == expected
    assert R.redact({"output": {"note": f"used {token}"}}) == {"output": {"note": f"used {REDACTED}"}}
    # Glued to more of a word before it: no such key; after it, one of a fixed length
    # glued to more is none either (one of a length that varies is only a longer key).
    for text in [f"x{token}", f"_{token}"] + ([f"{token}x", f"{token}_1"] if fixed_length else []):
        assert R.redact_text(text) is text


def assert_redacted_inside_an_encoded_url(token: str, times: int) -> None:
    """``token`` inside a URL encoded ``times`` times inside a click tracker's is redacted,
    the rest kept byte for byte."""
    encoded = f"https://app.example.com/in?next=%2F&code={token}"
    for _ in range(times):
        encoded = quote(encoded, safe="")
    tracked = f"https://t.example/ls/click?u={encoded}&id=7"
    redacted = R.redact_url(tracked)
    assert token not in redacted and redacted.endswith(f"{REDACTED}&id=7"), redacted
    assert redacted.replace(REDACTED, token) == tracked


@pytest.mark.parametrize("token", TOKENS)
def test_a_channels_or_apps_key_is_redacted_by_its_form_with_no_key_before_it(token):
    assert_redacted_by_form(token, token in FIXED_LENGTH)


@pytest.mark.parametrize("token", [t for t in TOKENS if t.isascii() and not set(t) & set(":/+=")])
@pytest.mark.parametrize("times", [1, 2, 3])
def test_such_a_key_inside_a_url_encoded_in_another_is_redacted(token, times):
    assert_redacted_inside_an_encoded_url(token, times)


@pytest.mark.parametrize("sid, secret", [(TWILIO_SID, TWILIO_TOKEN), (TWILIO_KEY_SID, TWILIO_KEY_SECRET)])
def test_a_twilio_token_after_its_sid_loses_the_token_and_keeps_the_sid(sid, secret):
    for text in [
        f"{sid}:{secret}",
        f"curl -X POST https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json -u {sid}:{secret}",
        f'{{"auth": "{sid}:{secret}"}}',
    ]:
        redacted = R.redact_text(text)
        assert secret not in redacted and f"{sid}:{REDACTED}" in redacted
        assert redacted.replace(REDACTED, secret) == text
        assert R.redact_text(redacted) == redacted
    # A SID alone, or with a token of another length or glued to more: kept.
    for text in [sid, f"{sid}:{secret[:-1]}", f"{sid}:{secret}x", f"x{sid}:{secret[:31]}"]:
        assert R.redact_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "EAAJ" + (_ALNUM * 3)[:78],  # one short of Meta's shortest
        "EAGER to please", "EAA-123",
        "12345:Apple", "order 1234567:A" + "b" * 33, "1234:A" + "b" * 34, "10:00:AM",
        "ACCOUNT:" + _HEX, "AC" + _HEX[:-1] + ":" + _HEX, "SKU:" + _HEX,
        "whsec_short", "ya29.abc", "1//0abc", "https://x.io/1//0" + "a" * 39 + "/", "GOCSPX-" + "a" * 27,
        "path/to/patterns.json", "patAbCdEfGhIjKlMn." + _HEX, "ntn_123", "secret_santa", "top_secret_plan",
        "lin_api_v2", "xoxe",
    ],
)
def test_a_lookalike_of_such_a_key_is_kept(text):
    assert R.redact_text(text) is text


# --- a key beside the value names the secret --------------------------------------------

PAIRS = [
    # A header list's entry written as JSON or a repr, as an error or a raw body quotes it.
    (
        'request failed: {"headers": [{"name": "X-Api-Key", "value": "abc123"}, {"name": "Accept", "value": "json"}]}',
        f'request failed: {{"headers": [{{"name": "X-Api-Key", "value": "{REDACTED}"}}, {{"name": "Accept", "value": "json"}}]}}',
    ),
    ("{'name': 'Authorization', 'value': 'Bearer abc123'}", f"{{'name': 'Authorization', 'value': '{REDACTED}'}}"),
    ('{"Name": "X-Postmark-Server-Token", "Value": "0a1b-2c3d"}', f'{{"Name": "X-Postmark-Server-Token", "Value": "{REDACTED}"}}'),
    ('{"value": "abc123", "key": "api_key"}', f'{{"value": "{REDACTED}", "key": "api_key"}}'),
    ('{"header": "Cookie", "value": "sid=1; theme=dark"}', f'{{"header": "Cookie", "value": "{REDACTED}"}}'),
    ('{"name": "DB_PASSWORD", "value": 1234}', f'{{"name": "DB_PASSWORD", "value": "{REDACTED}"}}'),
    ('{"Name"=>"Password", "Value"=>"hunter2"}', f'{{"Name"=>"Password", "Value"=>"{REDACTED}"}}'),
    # Quoted inside a JSON string (a body logged by another layer).
    (
        r'{"body": "{\"name\": \"X-Api-Key\", \"value\": \"abc123\"}"}',
        rf'{{"body": "{{\"name\": \"X-Api-Key\", \"value\": \"{REDACTED}\"}}"}}',
    ),
    # An object nested in the entry is passed over, before or after the value.
    ('{"name": "token", "meta": {"a": {"b": 1}}, "value": "abc123"}', f'{{"name": "token", "meta": {{"a": {{"b": 1}}}}, "value": "{REDACTED}"}}'),
    ('{"value": "abc123", "meta": {"a": 1}, "name": "token"}', f'{{"value": "{REDACTED}", "meta": {{"a": 1}}, "name": "token"}}'),
    # Markup: a config's pair, a form's hidden token, a password field, a meta tag.
    ('<add key="Password" value="hunter2"/>', f'<add key="Password" value="{REDACTED}"/>'),
    ("<add key='ClearTextPassword' value='hunter2' />", f"<add key='ClearTextPassword' value='{REDACTED}' />"),
    ('<input type="hidden" name="csrf_token" value="abc123XYZ">', f'<input type="hidden" name="csrf_token" value="{REDACTED}">'),
    ('<input value="abc123XYZ" name="authenticity_token">', f'<input value="{REDACTED}" name="authenticity_token">'),
    ('<input type="password" id="pw" value="letmein">', f'<input type="password" id="pw" value="{REDACTED}">'),
    ('<input name="user[password]" value="hunter2">', f'<input name="user[password]" value="{REDACTED}">'),
    ('<INPUT TYPE="hidden" NAME="csrf_token" VALUE="abc123XYZ">', f'<INPUT TYPE="hidden" NAME="csrf_token" VALUE="{REDACTED}">'),
    ('<meta name="csrf-token" content="abc123XYZ" />', f'<meta name="csrf-token" content="{REDACTED}" />'),
    # A signed upload form's signature, as in a URL.
    ('<input type="hidden" name="X-Amz-Signature" value="5d672d79">', f'<input type="hidden" name="X-Amz-Signature" value="{REDACTED}">'),
    # A Kubernetes container's env as YAML: the entry's name above or below its value.
    ("env:\n  - name: DB_PASSWORD\n    value: hunter2x\n  - name: LOG_LEVEL\n    value: debug\n", f"env:\n  - name: DB_PASSWORD\n    value: {REDACTED}\n  - name: LOG_LEVEL\n    value: debug\n"),
    ('env:\n- value: "s3cr3t"\n  name: API_TOKEN\n- name: PORT\n  value: "8080"\n', f'env:\n- value: "{REDACTED}"\n  name: API_TOKEN\n- name: PORT\n  value: "8080"\n'),
    ("  - value: abc123\n    valueFrom:\n      a: b\n    name: API_TOKEN\n", f"  - value: {REDACTED}\n    valueFrom:\n      a: b\n    name: API_TOKEN\n"),
    # CloudFormation's task definitions name them Name and Value; a list in a list.
    ("Environment:\n  - Name: DB_PASSWORD\n    Value: hunter2x\n", f"Environment:\n  - Name: DB_PASSWORD\n    Value: {REDACTED}\n"),
    ("- - name: API_TOKEN\n    value: abc123\n", f"- - name: API_TOKEN\n    value: {REDACTED}\n"),
    ("  - name: 'API_TOKEN'\r\n    image: x\r\n    valueFrom:\r\n      a: b\r\n    value: abc123\r\n", f"  - name: 'API_TOKEN'\r\n    image: x\r\n    valueFrom:\r\n      a: b\r\n    value: {REDACTED}\r\n"),
]

KEPT = [
    '{"name": "Accept", "value": "application/json"}',
    '{"name": "signature", "value": "t=1,v1=abc"}',  # a webhook's own HMAC header: no credential
    '{"value": "abc123", "meta": {"name": "X-Api-Key"}}',  # a nested object's name is not the entry's
    '{"name": "X-Api-Key"} then {"value": "abc123"}',  # two objects
    '{"name": "password", "content": "abc123"}',  # content names a markup attribute only
    '<input type="text" name="email" value="a@b.c">',
    '<meta name="description" content="Welcome series">',
    '<input name="password"> and value="abc123"',  # the value outside the tag
    'value="abc123" name="password"',  # no tag
    'when n < 3: value="abc123" name="password"',  # no tag either
    '<input value="abc123"><input name="password">',  # another tag's name
    "name: API_TOKEN\n\nother:\n  value: abc123",  # another entry
    "  - name: API_TOKEN\n  - value: abc123",  # two entries
    "  - name: PORT\n    value: abc123\n  - value: x\n    name: API_TOKEN",  # the next entry's name
    "   name: API_TOKEN\nxx value: abc123",  # no YAML entry's key
    "a:\n    name: API_TOKEN\n  b:\n    value: abc123",  # another mapping's name
    "  - name: API_TOKEN\n    value: letmein",  # one ordinary word after "key:" stays, as everywhere
    "value: abc123",
]


@pytest.mark.parametrize("text, expected", PAIRS)
def test_a_value_whose_name_beside_it_is_a_secret_key_is_redacted_in_text(text, expected):
    assert R.redact_text(text) == expected
    assert R.redact_text(expected) == expected


@pytest.mark.parametrize("text", KEPT)
def test_a_value_named_by_no_secret_key_is_kept(text):
    assert R.redact_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        # Found by fuzzing: a first redaction's value swallows a brace ("2{" after sig=, "…}\"
        # after a YAML value), and a second one, looking across its mask, found an entry's
        # name the first did not.
        '{"value": "a b" x https://x.io/a?token=1&sig=2{"name": "Authorization", =',
        '{"name": "Authorization", <add key="Password" \n  - name: \'DB_PASSWORD\'\n    value: letmein9G}'
        '\\"name\\": \\"api_key\\", \\"value\\": \\"abc\\"',
    ],
)
def test_redacting_twice_changes_nothing_where_a_first_redaction_swallowed_a_brace(text):
    once = R.redact_text(text)
    assert once != text and R.redact_text(once) == once


_NAMES = st.one_of(
    st.sampled_from(["Authorization", "X-Api-Key", "api_key", "Accept", "Content-Type", "X-Request-Id", "Cookie", "DB_PASSWORD", "PORT"]),
    st.text(alphabet="abcdefgijklmnopqrstuvwxyzABCDEFXYZ_-", min_size=1, max_size=24),
)
_VALUES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-", min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), min_size=1, max_size=4), st.booleans())
def test_a_header_list_written_as_json_text_is_redacted_as_the_list_itself_is(headers, postmark):
    name_key, value_key = ("Name", "Value") if postmark else ("name", "value")
    entries = [{name_key: n, value_key: v} for n, v in headers]
    text = json.dumps({"headers": entries})
    as_object = R.redact({"headers": entries})
    assert R.redact_text(text) == json.dumps(as_object)
    for entry, (name, value) in zip(as_object["headers"], headers):
        if R.is_secret(name):
            assert entry[value_key] == REDACTED


# A note's words: braces and brackets among them (a template's "{name}", "missing }"), not
# glued to its quotes (see the last test of braces below).
_NOTES = st.lists(st.sampled_from(["a", "b c", "{", "}", "{name}", "x{y", "[", "]", ":", ",", "it's", '"q"']), max_size=4).map(
    lambda words: " ".join(["note", *words, "end"])
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, _VALUES, _NOTES, st.permutations(["name", "value", "note"])), min_size=1, max_size=3),
    st.booleans(),
)
def test_a_header_list_with_braces_in_its_strings_is_redacted_as_the_list_itself_is(headers, as_repr):
    """An entry's other strings may hold braces and quotes a scan for the entry's object
    would misread (a note's "missing }", a template's "{name"): the entry's value is still
    redacted where its name is a secret key's, and kept where not. JSON or a repr's."""
    entries = [{field: {"name": n, "value": v, "note": note}[field] for field in order} for n, v, note, order in headers]
    write = repr if as_repr else json.dumps
    text = write({"headers": entries})
    as_object = R.redact({"headers": entries})
    assert R.redact_text(text) == write(as_object)


def test_a_brace_inside_a_string_of_the_entry_hides_it_no_more():
    for text in (
        '[{"note": "a } b", "name": "X-Api-Key", "value": "abc123def"}]',
        '[{"name": "X-Api-Key", "note": "a { b", "value": "abc123def"}]',
        "[{'note': 'a } b', 'name': 'X-Api-Key', 'value': 'abc123def'}]",
        orjson.dumps({"body": '[{"note": "a } b", "name": "X-Api-Key", "value": "abc123def"}]'}).decode(),
    ):
        redacted = R.redact_text(text)
        assert "abc123def" not in redacted and REDACTED in redacted and R.redact_text(redacted) == redacted, text
    # A secret's name in an object nested in the entry names nothing of the entry's.
    text = '[{"note": "}", "value": "json", "n": {"name": "X-Api-Key"}}]'
    assert R.redact_text(text) == text
    # A brace glued to a string's quote, where the text's braces match all the same, is read
    # as JSON's: the braces are blanked only where they do not match, or one stands where
    # JSON has none (a cost every header list would pay otherwise).
    text = '[{"note": "missing }", "name": "X-Api-Key", "value": "abc123def"}, {"note": "{"}]'
    assert R.redact_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        # The braces match; an odd "}" (not before a separator) tells, the "{" glued to a quote not.
        '[{"note": "a } b", "name": "X-Api-Key", "value": "abc123def"}, {"note": "{"}]',
        # The braces match; an odd "{" (not before a key's quote) tells, the "}" glued to a quote not.
        '[{"note": "}"}, {"name": "X-Api-Key", "note": "a { b", "value": "abc123def"}]',
        # A quote in the prose before the list opens no string: it would hide the list's braces.
        'He said "see [{"note": "a } b", "name": "X-Api-Key", "value": "abc123def"}]',
    ],
)
def test_a_brace_inside_a_string_is_told_by_either_kind_of_brace(text):
    redacted = R.redact_text(text)
    assert "abc123def" not in redacted and R.redact_text(redacted) == redacted


def test_a_brace_glued_to_a_quote_is_read_when_the_braces_do_not_match():
    text = '[{"note": "missing }", "name": "X-Api-Key", "value": "abc123def"}]'
    assert R.redact_text(text) == f'[{{"note": "missing }}", "name": "X-Api-Key", "value": "{REDACTED}"}}]'


@settings(max_examples=200, deadline=None)
@given(_NAMES, st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=30))
def test_a_form_fields_value_is_redacted_when_its_name_is_a_secret_parameters(name, value):
    html = f'<form><input type="hidden" name="{name}" value="{value}"></form>'
    redacted = R.redact_text(html)
    if R.is_secret_param(name):
        assert redacted == html.replace(f'value="{value}"', f'value="{REDACTED}"')
    else:
        assert redacted == html
    assert R.redact_text(redacted) == redacted


# --- through the log ---------------------------------------------------------------------

_LOGGED = '{"headers": [{"name": "Authorization", "value": "Bearer abc123XYZ"}]}'


def test_appended_events_keep_no_such_secret_and_an_older_releases_copy_is_a_duplicate_when_resent(log):
    events = [
        triggered("r1", data={"whatsapp": META, "request": _LOGGED}),
        ev("run.failed", run_id="r1", error=f"telegram refused {TELEGRAM}; twilio {TWILIO_SID}:{TWILIO_TOKEN}"),
    ]
    ledger.append_input(log, jsonl(events))
    stored = [e.body for e in log.run_events("r1")]
    text = orjson.dumps(stored).decode()
    assert META not in text and TELEGRAM not in text and TWILIO_TOKEN not in text and "abc123XYZ" not in text
    assert stored[0]["data"]["request"] == f'{{"headers": [{{"name": "Authorization", "value": "{REDACTED}"}}]}}'
    assert stored[1]["error"] == f"telegram refused {REDACTED}; twilio {TWILIO_SID}:{REDACTED}"
    # Stored whole by a release that knew no such rule, then sent again: a duplicate.
    older = triggered("r2", data={"whatsapp": META, "request": _LOGGED})
    stored_as_an_older_release_did(log, [older])
    before = log.run_events("r2")[0].body
    assert before["data"]["whatsapp"] == META
    result, _ = ledger.append_input(log, jsonl([older]))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r2")[0].body == before


def test_the_last_releases_partial_mask_matches_this_ones_whole_mask():
    # The last release masked the Bearer credential alone; this one masks the whole value.
    last = {"request": '{"name": "Authorization", "value": "Bearer [REDACTED]"}'}
    now = {"request": R.redact_text('{"name": "Authorization", "value": "Bearer abc123XYZ"}')}
    assert now["request"] == f'{{"name": "Authorization", "value": "{REDACTED}"}}'
    assert same_but_redacted(last, now) and same_but_redacted(now, last)


def test_scan_secrets_finds_such_secrets_an_older_release_stored(log):
    stored_as_an_older_release_did(
        log,
        [
            triggered("r1", data={"page": '<input type="hidden" name="csrf_token" value="abc123XYZ">'}),
            ev("run.failed", run_id="r1", error=f"google said 401 for {TOKENS[5]}"),
            triggered("r2", data={"page": '<input type="text" name="email" value="a@b.c">'}),
        ],
    )
    scan = ledger.scan_secrets(log, Redactor())
    assert (scan.events_read, scan.found) == (3, 2)
    places = {(f.type, f.run_id, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {
        ("run.triggered", "r1", "data.page"): f'<input type="hidden" name="csrf_token" value="{REDACTED}">',
        ("run.failed", "r1", "error"): f"google said 401 for {REDACTED}",
    }
