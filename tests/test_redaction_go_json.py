"""URLs in text written by JSON encoders that escape a URL's characters: Go's writes every
``&`` as ``\\u0026`` (and ``<``, ``>`` as ``\\u003c``, ``\\u003e``), Gson (Java's, by
default) ``=`` as ``\\u003d`` and ``'`` as ``\\u0027`` too. A text quoting such a service's
body (an error holding its response, a raw body kept as a string) holds them so. A signed
URL's signature after ``\\u0026`` is redacted as after ``&``, a pair joined by ``\\u003d`` as
by ``=``, and a secret pair's value ends where an escaped ``&`` stands as where a plain one
does, the parameters after it kept."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import REDACTED, Redactor
from tests.conftest import triggered
from tests.histories import jsonl
from tests.test_redaction_one_time_links import QUERY_LINKS
from tests.test_secret_scan import stored_as_an_older_release_did

R = Redactor()

_HEX64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
SIGNED = [
    # S3's presigned GET.
    (
        "https://bucket.s3.amazonaws.com/f.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20250101T000000Z"
        f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={_HEX64}&x-id=GetObject",
        "https://bucket.s3.amazonaws.com/f.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20250101T000000Z"
        f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={REDACTED}&x-id=GetObject",
    ),
    # Google Cloud Storage's.
    (
        f"https://storage.googleapis.com/b/f.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Expires=900&X-Goog-Signature={_HEX64}",
        f"https://storage.googleapis.com/b/f.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Expires=900&X-Goog-Signature={REDACTED}",
    ),
    # Azure's shared access signature.
    (
        "https://acct.blob.core.windows.net/c/f.pdf?sv=2022-11-02&se=2025-01-01&sr=b&sp=r&sig=AbCd1234%2BEfGh5678%3D&rscd=inline",
        f"https://acct.blob.core.windows.net/c/f.pdf?sv=2022-11-02&se=2025-01-01&sr=b&sp=r&sig={REDACTED}&rscd=inline",
    ),
    # A Shopify app proxy's.
    (
        f"https://shop.example/apps/proxy?shop=x.myshopify.com&timestamp=1735689600&hmac={_HEX64}",
        f"https://shop.example/apps/proxy?shop=x.myshopify.com&timestamp=1735689600&hmac={REDACTED}",
    ),
    # imgix's, known by its form.
    (
        "https://x.imgix.net/a.jpg?w=100&h=80&s=0123456789abcdef0123456789abcdef",
        f"https://x.imgix.net/a.jpg?w=100&h=80&s={REDACTED}",
    ),
    # A secret pair mid-query: the parameters after it are kept.
    (
        "https://api.example.com/v1/items?apiKey=abcdef1234567890XYZ&lang=en&page=2",
        f"https://api.example.com/v1/items?apiKey={REDACTED}&lang=en&page=2",
    ),
]


def go(text: str) -> str:
    """``text`` as Go's encoder writes it inside a JSON string."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def gson(text: str) -> str:
    """``text`` as Gson writes it inside a JSON string (its default, HTML-safe escaping)."""
    return go(text).replace("=", "\\u003d").replace("'", "\\u0027")


def escaped_slashes(text: str) -> str:
    """``text`` with its slashes escaped (PHP's json_encode; Go's never does)."""
    return text.replace("/", "\\/")


@pytest.mark.parametrize(("url", "expected"), SIGNED)
@pytest.mark.parametrize(
    "wrap",
    [
        lambda u: u,
        lambda u: f"GET {u} failed: 403",
        lambda u: '{"error": "fetch failed", "url": "%s"}' % u,
        lambda u: '{"body": "{\\"url\\":\\"%s\\"}"}' % u,  # a JSON body quoted in another's string
        lambda u: "<%s>" % u,
    ],
    ids=["alone", "sentence", "json", "json-in-json", "angle-brackets"],
)
def test_a_signed_url_written_by_go_is_redacted_as_written_plain(url, expected, wrap):
    plain = R.redact_text(wrap(url))
    assert plain == wrap(expected)  # the plain form, for reference
    for written in (go, lambda t: escaped_slashes(go(t))):
        text = written(wrap(url))
        assert R.redact_text(text) == written(wrap(expected)), text
        assert R.redact_text(written(wrap(expected))) == written(wrap(expected))  # twice: the same


@pytest.mark.parametrize("escape", ["\\u0026", "\\u003c", "\\u003e", "\\u0027", "\\u0022", "\\'", '\\"'])
def test_a_secret_pairs_value_ends_at_an_escaped_character_that_ends_it_plain(escape):
    text = f"retrying with token=s3cr3tT0k3nValue99{escape}lang=en done"
    assert R.redact_text(text) == f"retrying with token={REDACTED}{escape}lang=en done"


def test_a_backslash_in_a_value_not_such_an_escape_is_part_of_it():
    assert R.redact_text("password=abc\\def123 next") == f"password={REDACTED} next"
    assert R.redact_text("password=abc\\u0041def next") == f"password={REDACTED} next"  # another escape


def test_a_parameter_named_only_after_the_escape_is_no_secret():
    """The name is what follows \\u0026: ``u0026sig`` is no parameter of its own, and a
    name that only ends in a secret's is not one (``design=``)."""
    text = "https://x.example/p?a=1\\u0026design=abcdef1234567890"
    assert R.redact_text(text) == text
    # Without the backslash, u0026sig is a word of its own: not a signature's name, and
    # u0026cookie not a cookie.
    for text in ("https://x.example/p?a=1 u0026sig=abcdef1234567890", "a=1 u0026cookie=abcdef1234567890"):
        assert R.redact_text(text) == text


@pytest.mark.parametrize("length", [40, 59, 60, 64])
def test_a_long_parameter_name_after_the_escape_counts_as_after_a_plain_ampersand(length):
    name = "x" * (length - len("_signature")) + "_signature"
    plain = f"https:\\/\\/x.example\\/p?a=1&{name}=abcdef1234567890 ok"
    assert R.redact_text(plain.replace("&", "\\u0026")) == R.redact_text(plain).replace("&", "\\u0026")
    assert REDACTED in R.redact_text(plain)


@pytest.mark.parametrize("value", ["abc123def456", "abc123def456\\", "abc\\123\\def\\\\"])
@pytest.mark.parametrize("depth", [1, 2])
def test_a_value_inside_a_json_string_is_masked_whole_and_the_text_stays_json(value, depth):
    """A JSON text kept as a string (``depth`` 1), or one inside another's string (2, its
    escapes doubled): ``\\\\`` is a backslash of the value, ``\\"`` an inner string's end.
    The mask takes the value's escapes and leaves the string's end, so that the text stays
    as well formed as it was."""
    text = orjson.dumps({"q": f"token={value}", "n": 1}).decode()
    if depth == 2:
        text = orjson.dumps({"body": text}).decode()
    redacted = R.redact_text(text)
    inner = orjson.loads(orjson.loads(redacted)["body"]) if depth == 2 else orjson.loads(redacted)
    assert inner == {"q": f"token={REDACTED}", "n": 1}
    assert R.redact_text(redacted) == redacted


_NAMES = ["lang", "page", "utm_source", "id", "token", "apiKey", "access_token", "X-Amz-Signature", "sig", "hmac", "client_secret", "password"]
_VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=24).filter(
    lambda v: not v.endswith(".")  # a full stop after a URL ends its sentence
)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(_NAMES), _VALUE), min_size=1, max_size=6),
    slashes=st.booleans(),
    quoted=st.booleans(),
)
def test_any_query_written_by_go_is_redacted_as_its_plain_form(pairs, slashes, quoted):
    url = "https://cdn.example.com/files/report?" + "&".join(f"{n}={v}" for n, v in pairs)
    text = f'{{"url": "{url}"}}' if quoted else f"see {url} now"
    expected = go(R.redact_text(text))
    written = go(text)
    if slashes:
        written, expected = escaped_slashes(written), escaped_slashes(expected)
    assert R.redact_text(written) == expected
    assert R.redact_text(expected) == expected
    # Every secret's value is gone, every other parameter kept.
    for name, value in pairs:
        if name in ("lang", "page", "utm_source", "id"):
            assert f"{name}={value}" in R.redact_text(written)
    assert R.redact_text(written).count(REDACTED) == sum(1 for n, _ in pairs if n not in ("lang", "page", "utm_source", "id"))


# What the last release stored for such texts: a Go URL's signature whole, a pair's value
# with the parameters after it, and a value with the backslash of the quote closing it.
GO_SIGNED = go(SIGNED[0][0])
GO_PAIR = "GET https:\\/\\/api.example.com\\/v1?apiKey=abcdef1234567890XYZ\\u0026lang=en\\u0026page=2 failed"
GO_PAIR_AS_STORED = f"GET https:\\/\\/api.example.com\\/v1?apiKey={REDACTED} failed"
NESTED = '{"body": "{\\"q\\":\\"token=abc123def456\\"}"}'
NESTED_AS_STORED = '{"body": "{\\"q\\":\\"token=' + REDACTED + '"}"}'


def test_an_older_releases_copies_are_duplicates_when_sent_again(log):
    older = [
        triggered("r1", data={"download": GO_SIGNED}),
        triggered("r2", data={"error": GO_PAIR_AS_STORED}),
        triggered("r3", data={"body": NESTED_AS_STORED}),
    ]
    stored_as_an_older_release_did(log, older)
    before = [log.run_events(r)[0].body for r in ("r1", "r2", "r3")]
    resent = [
        {**older[0]},
        {**older[1], "data": {"error": GO_PAIR}},
        {**older[2], "data": {"body": NESTED}},
    ]
    result, _ = ledger.append_input(log, jsonl(resent))
    assert (result.duplicates, result.appended) == (3, 0)
    assert [log.run_events(r)[0].body for r in ("r1", "r2", "r3")] == before


def test_scan_secrets_finds_a_go_urls_signature_an_older_release_stored(log):
    stored_as_an_older_release_did(log, [triggered("r1", data={"download": GO_SIGNED}), triggered("r2", data={"error": GO_PAIR_AS_STORED})])
    scan = ledger.scan_secrets(log, Redactor())
    assert (scan.events_read, scan.found) == (2, 1)
    places = {(f.run_id, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {("r1", "data.download"): go(SIGNED[0][1])}


def test_appended_events_keep_no_go_urls_signature(log):
    ledger.append_input(log, jsonl([triggered("r1", data={"download": GO_SIGNED, "error": GO_PAIR})]))
    assert log.run_events("r1")[0].body["data"] == {
        "download": go(SIGNED[0][1]),
        "error": f"GET https:\\/\\/api.example.com\\/v1?apiKey={REDACTED}\\u0026lang=en\\u0026page=2 failed",
    }


@pytest.mark.parametrize(("url", "expected"), SIGNED + QUERY_LINKS[:6])
@pytest.mark.parametrize(
    "wrap",
    [lambda u: u, lambda u: f"GET {u} failed: 403", lambda u: '{"error": "fetch failed", "url": "%s"}' % u],
    ids=["alone", "sentence", "json"],
)
def test_a_url_written_by_gson_is_redacted_as_written_plain(url, expected, wrap):
    assert R.redact_text(wrap(url)) == wrap(expected)  # the plain form, for reference
    text = gson(wrap(url))
    assert R.redact_text(text) == gson(wrap(expected)), text
    assert R.redact_text(gson(wrap(expected))) == gson(wrap(expected))


def test_a_secret_pair_joined_by_gsons_escape_loses_its_value_with_its_padding():
    text = "login failed: password\\u003dhunter2x\\u0026user\\u003dana"
    assert R.redact_text(text) == f"login failed: password\\u003d{REDACTED}\\u0026user\\u003dana"
    # Base64's padding is Gson's \u003d too: the value's.
    text = "https://x.example/f?sig\\u003dAbC123dEf456\\u003d\\u003d\\u0026a\\u003d1"
    assert R.redact_text(text) == f"https://x.example/f?sig\\u003d{REDACTED}\\u0026a\\u003d1"


@pytest.mark.parametrize(
    "text",
    [
        "a b\\u003dc and x\\u003d5",  # no secret's name
        "sig\\u003dabcdef1234567890",  # a signature's name only counts after ? or & (or \u0026)
        "u0026sig\\u003dabcdef1234567890",  # no backslash: u0026sig is a word
        f"token\\u003d{REDACTED}\\u0026a\\u003d1",  # masked already
        "token\\u003d",  # nothing after it
        "token\\u003d\\u003dabcdef1234567890",  # token==abc…, as in text: no pair
        "token\\u003d=abcdef1234567890",
        "https://shop.example/cart?code\\u003dSUMMERSALE2024ABCD",  # no purpose before it
    ],
)
def test_gson_lookalikes_are_kept(text):
    assert R.redact_text(text) == text


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(_NAMES), _VALUE), min_size=1, max_size=6), quoted=st.booleans())
def test_any_query_written_by_gson_is_redacted_as_its_plain_form(pairs, quoted):
    url = "https://cdn.example.com/files/report?" + "&".join(f"{n}={v}" for n, v in pairs)
    text = f'{{"url": "{url}"}}' if quoted else f"see {url} now"
    expected = gson(R.redact_text(text))
    assert R.redact_text(gson(text)) == expected
    assert R.redact_text(expected) == expected


def test_appended_events_keep_no_gson_urls_signature(log):
    ledger.append_input(log, jsonl([triggered("r1", data={"download": gson(SIGNED[0][0])})]))
    assert log.run_events("r1")[0].body["data"] == {"download": gson(SIGNED[0][1])}


@pytest.mark.parametrize("length", [64, 65])
def test_a_gson_pairs_name_is_a_key_up_to_a_keys_most(length):
    name = "x" * (length - len("_token")) + "_token"
    text = f"retry {name}=abcdef1234567890 later"
    assert R.redact_text(gson(text)) == gson(R.redact_text(text))
    assert (REDACTED in R.redact_text(text)) == (length <= 64)


def test_gsons_escapes_mixed_with_plain_ones_and_in_upper_case():
    """A text built by hand from escaped and plain parts, and hex digits in upper case (as
    .NET's encoder writes them)."""
    assert R.redact_text("x?a\\u003d1&sig\\u003dabcdef123456") == f"x?a\\u003d1&sig\\u003d{REDACTED}"
    assert R.redact_text("x?a\\u003D1\\u0026sig\\u003Dabcdef123456") == f"x?a\\u003D1\\u0026sig\\u003D{REDACTED}"
    assert R.redact_text("password\\u003Dhunter2x") == f"password\\u003D{REDACTED}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Firebase's code, no purpose named: its name alone is the hint.
        ("https://example.com/action?oobCode\\u003dAbCdEf123456GhIjKl789", f"https://example.com/action?oobCode\\u003d{REDACTED}"),
        # imgix's signature first in its query.
        ("https://x.imgix.net/a.jpg?s\\u003d0123456789abcdef0123456789abcdef", f"https://x.imgix.net/a.jpg?s\\u003d{REDACTED}"),
        # A one-time token's base64 padding written by Gson: the token's.
        (
            "https://x.supabase.co/auth/confirm?token_hash\\u003dabcDEF1234567890ghiJKL\\u003d\\u003d\\u0026type\\u003drecovery",
            f"https://x.supabase.co/auth/confirm?token_hash\\u003d{REDACTED}\\u0026type\\u003drecovery",
        ),
    ],
)
def test_gsons_one_time_and_signed_media_forms(text, expected):
    assert R.redact_text(text) == expected
    assert R.redact_text(expected) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password \\u003d hunter2x and more", f"password \\u003d {REDACTED} and more"),  # spaces around
        ("password \\u003d required", "password \\u003d required"),  # one ordinary word after a space
        ("token\\u003d user\\u003dbob", "token\\u003d user\\u003dbob"),  # an empty value, then a pair
        ('token\\u003d"abc123"', f'token\\u003d"{REDACTED}"'),  # quoted: its quotes kept
        ('{"m": "token\\u003d\\"abc123\\" sent"}', f'{{"m": "token\\u003d\\"{REDACTED}\\" sent"}}'),  # quotes escaped
        ('token\\u003d"abc123 and the rest', f'token\\u003d"{REDACTED}'),  # a quote not closed: to the end
        ("{'m': 'token\\u003d\\'abc123\\' sent'}", f"{{'m': 'token\\u003d\\'{REDACTED}\\' sent'}}"),  # a repr's
    ],
)
def test_gson_pairs_are_read_as_pairs_with_an_equals_sign_are(text, expected):
    assert R.redact_text(text) == expected
    assert R.redact_text(expected) == expected
    plain = text.replace("\\u003d", "=")
    assert R.redact_text(plain) == expected.replace("\\u003d", "=")


# What the last release stored for Gson's pairs (nothing masked) and for a value in escaped
# quotes after "=" (only its opening backslash masked, the value kept after the mask).
GSON_PAIR = "https://x.example/p?a\\u003d1\\u0026sig\\u003dabcdef123456"
ESCAPED_QUOTES = 'curl -d token=\\"abc123def456\\" https://x.example'
ESCAPED_QUOTES_AS_STORED = f'curl -d token={REDACTED}"abc123def456\\" https://x.example'


def test_an_older_releases_gson_and_escaped_quote_copies_are_duplicates_and_scanned(log):
    older = [triggered("r1", data={"m": GSON_PAIR}), triggered("r2", data={"m": ESCAPED_QUOTES_AS_STORED})]
    stored_as_an_older_release_did(log, older)
    resent = [older[0], {**older[1], "data": {"m": ESCAPED_QUOTES}}]
    result, _ = ledger.append_input(log, jsonl(resent))
    assert (result.duplicates, result.appended) == (2, 0)
    scan = ledger.scan_secrets(log, Redactor())
    # The Gson pair is found; a value kept after a mask reads as text after it, and is not.
    assert {(f.run_id, p.redacted) for f in scan.findings for p in f.fields} == {
        ("r1", f"https://x.example/p?a\\u003d1\\u0026sig\\u003d{REDACTED}"),
    }
    ledger.append_input(log, jsonl([triggered("r3", data={"m": ESCAPED_QUOTES})]))
    assert log.run_events("r3")[0].body["data"]["m"] == f'curl -d token=\\"{REDACTED}\\" https://x.example'
