"""Secrets inside strings: URLs (a password, secret query and fragment parameters) and
credentials in messages (Bearer/Basic, key=value, key: value, "key": "value") are redacted
before an event is stored, by every way in, and redacting twice changes nothing."""

from __future__ import annotations

import json
import os

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from flowledger import ingest_process, ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.domain.redaction import DEFAULT_SECRET_KEYS, REDACTED, Redactor
from flowledger.domain.vocabulary import validate_event
from flowledger.ingest_process import forked_candidates
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.histories import jsonl
from tests.test_properties import payload_with_secret
from tests.test_webhooks import SECRETS as PROVIDER_SECRETS
from tests.test_webhooks import sendgrid_headers

R = Redactor()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- URLs -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "https://app.example.com/reset?token=abc123&utm_source=mail",
            "https://app.example.com/reset?token=[REDACTED]&utm_source=mail",
        ),
        ("https://user:pass@host/x", "https://user:[REDACTED]@host/x"),
        ("postgresql://app:s3cret@db:5432/crm?sslmode=require", "postgresql://app:[REDACTED]@db:5432/crm?sslmode=require"),
        ("redis://:p4ss@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
        # OAuth's implicit flow puts the token in the fragment.
        (
            "https://app.example.com/cb#access_token=ya29.a0Af&token_type=Bearer&expires_in=3599",
            "https://app.example.com/cb#access_token=[REDACTED]&token_type=Bearer&expires_in=3599",
        ),
        # Any spelling of a key; names percent-decoded; values never re-encoded; ; separates too.
        (
            "https://x.example/p?A=1&Api-Key=k%2Fz&b=%20c+d;Password=p%40ss&x&accessToken=t",
            "https://x.example/p?A=1&Api-Key=[REDACTED]&b=%20c+d;Password=[REDACTED]&x&accessToken=[REDACTED]",
        ),
        ("https://x.example/p?api%5Fkey=zz&a=1", "https://x.example/p?api%5Fkey=[REDACTED]&a=1"),
        ("https://x.example/#/reset?token=abc", "https://x.example/#/reset?token=[REDACTED]"),
        (
            "https://t.example/r?next=https://app.example/?token=abc&u=1",
            "https://t.example/r?next=https://app.example/?token=[REDACTED]&u=1",
        ),
        ("/reset?token=abc", "/reset?token=[REDACTED]"),
        ("https://u:p@h/?token=[REDACTED]", "https://u:[REDACTED]@h/?token=[REDACTED]"),
    ],
)
def test_a_urls_password_and_secret_parameters_are_redacted_and_the_rest_kept_byte_for_byte(url, expected):
    assert R.redact_url(url) == expected
    assert R.redact_url(expected) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/start",
        "https://shop.example.com/p/1?utm_source=newsletter&utm_medium=email&tokens=2&token_type=bearer",
        "https://x.example/?token=&a=1",  # nothing to hide
        "https://user@host/x?a=1",  # a user, no password
        "mailto:someone@example.com?subject=Hi",
        "https://x.example/a#section-2",
    ],
)
def test_a_url_with_nothing_secret_is_returned_as_it_is(url):
    assert R.redact_url(url) is url


# --- text ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "401 from provider: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.Zm9v",
            "401 from provider: Authorization: Bearer [REDACTED]",
        ),
        ("Basic dXNlcjpwYXNz", "Basic [REDACTED]"),
        ("sent bearer AbC-123_x~y+z/w== and failed", "sent bearer [REDACTED] and failed"),
        ("BEARER abc123", "BEARER [REDACTED]"),
        ("bEaReR abc123", "bEaReR [REDACTED]"),
        ("Authorization: token ghp_16C7e42F292c69", "Authorization: token [REDACTED]"),
        ("X-Api-Key: abcdef1234, then 403", "X-Api-Key: [REDACTED], then 403"),
        ("password: hunter2 was wrong", "password: [REDACTED] was wrong"),
        ("note: password=abc", "note: password=[REDACTED]"),
        ("(token=abc)", "(token=[REDACTED])"),
        ("[(token=abc)]))", "[(token=[REDACTED])]))"),
        ("rejected client_secret=cs1.", "rejected client_secret=[REDACTED]."),
        (
            "grant_type=refresh_token&refresh_token=r1&client_secret=cs",
            "grant_type=refresh_token&refresh_token=[REDACTED]&client_secret=[REDACTED]",
        ),
        (
            'provider said {"access_token":"abc","expires_in":3600, "token_type": "bearer"}',
            'provider said {"access_token":"[REDACTED]","expires_in":3600, "token_type": "bearer"}',
        ),
        ("{'password': 'x', 'secret': 12, 'token': None}", "{'password': '[REDACTED]', 'secret': \"[REDACTED]\", 'token': None}"),
        ('"Authorization": "Bearer xyz"', '"Authorization": "[REDACTED]"'),
        ("Cookie: sid=abc; theme=dark\nnext line", "Cookie: [REDACTED]\nnext line"),
        (
            "could not connect to postgresql://app:s3cret@db:5432/x?sslmode=require.",
            "could not connect to postgresql://app:[REDACTED]@db:5432/x?sslmode=require.",
        ),
        (
            "see (https://x.example/cb#access_token=abc&state=1) for details",
            "see (https://x.example/cb#access_token=[REDACTED]&state=1) for details",
        ),
        ("Bearer token=abc", "Bearer token=[REDACTED]"),
        # Spaces around = or : (a config dump, a sentence).
        ("password = hunter2", "password = [REDACTED]"),
        ("api_key     = abc123XYZ  # set by ops", "api_key     = [REDACTED]  # set by ops"),
        ("Passwd : s3cr3tq9 was refused", "Passwd : [REDACTED] was refused"),
        ("client_secret= cs1.", "client_secret= [REDACTED]."),
        ("token= dXNlcjpwYXNz==", "token= [REDACTED]"),
        ("password: a=b1", "password: [REDACTED]"),
        ('"token" : "abc"', '"token" : "[REDACTED]"'),
        # A credential followed by what a b64token does not hold is all of it.
        ("Bearer abc%2Bdef rejected", "Bearer [REDACTED] rejected"),
        ("Bearer abc%2Bdef: rejected", "Bearer [REDACTED]: rejected"),
        ("Bearer [REDACTED]#x", "Bearer [REDACTED]"),
        ("Authorization: Bearer token", "Authorization: Bearer [REDACTED]"),
        ("Authorization: xKeyAbCdEfGhIjKl rejected", "Authorization: [REDACTED] rejected"),
        # A quoted value cut short (a message truncated inside it) goes to its line's end.
        ('provider said {"access_token": "eyJhbGciOiJIUzI1NiJ9.e30', 'provider said {"access_token": "[REDACTED]'),
        ("token='abc def\nnext line", "token='[REDACTED]\nnext line"),
        ('\\"token\\": \\"abc\ndef\\" x', '\\"token\\": \\"[REDACTED]\ndef\\" x'),
        ('{"m": "a 5\\" screen, Cookie: sid=abc", "x": 1}', '{"m": "a 5\\" screen, Cookie: [REDACTED]", "x": 1}'),
        ("bearer s3cr3tjez/.{", "bearer [REDACTED]"),
        ("Basic dXNlcjpwYXNz#frag.", "Basic [REDACTED]."),
        # A pair after Bearer is the key rule's: a secret key's quoted value goes.
        ('Bearer token="abc"', 'Bearer token="[REDACTED]"'),
        # JSON inside a JSON string (a provider's body quoted in a message), at any depth.
        (
            '{"error": "{\\"access_token\\": \\"abc\\", \\"n\\": 1}"}',
            '{"error": "{\\"access_token\\": \\"[REDACTED]\\", \\"n\\": 1}"}',
        ),
        ('\\"token\\":\\"a\\\\\\"b\\" rest', '\\"token\\":\\"[REDACTED]\\" rest'),
        # A string ending in an escaped backslash ends there.
        (json.dumps('{"token": "a\\\\", "b": "c"}'), json.dumps('{"token": "[REDACTED]", "b": "c"}')),
        ('\\"secret\\": 1234, \\"x\\": true', '\\"secret\\": \\"[REDACTED]\\", \\"x\\": true'),
        (
            '\\\\\\"password\\\\\\": \\\\\\"p\\\\\\\\\\\\\\"w\\\\\\"',
            '\\\\\\"password\\\\\\": \\\\\\"[REDACTED]\\\\\\"',
        ),
        # A Cookie header's quoted values are its own; quoted itself, it ends with its quote.
        ('Cookie: sid="s3cr3t"; theme=dark', "Cookie: [REDACTED]"),
        ('Cookie="s3cr3t" next=1', 'Cookie="[REDACTED]" next=1'),
        ('{"h": "Cookie: a=b", "x": 1}', '{"h": "Cookie: [REDACTED]", "x": 1}'),
        ("['Set-Cookie: sid=abc', 'X: y']", "['Set-Cookie: [REDACTED]', 'X: y']"),
        ('"Cookie: a=\\"b c\\"; d=e" and more', '"Cookie: [REDACTED]" and more'),
        # An Authorization header's scheme may be any word; a raw key is the credential.
        ("Authorization: Klaviyo-API-Key pk_abc123", "Authorization: Klaviyo-API-Key [REDACTED]"),
        ("Authorization: ApiKey s3cr3tabc1", "Authorization: ApiKey [REDACTED]"),
        ("Authorization: SSWS 00abcXYZ", "Authorization: SSWS [REDACTED]"),
        ("Authorization: sk-proj-AbC123 failed", "Authorization: [REDACTED] failed"),
        # A URL with nothing of its own to hide: what is written into it is text.
        ("GET https://x.example/p;token=abc1 failed", "GET https://x.example/p;token=[REDACTED] failed"),
        # A key glued to its value by a colon, as a time is (a time's hours are no key).
        ("password:hunter2X9 at 10:00:00", "password:[REDACTED] at 10:00:00"),
        ("Cookie:sid=abc1 then", "Cookie:[REDACTED]"),  # to its line's end
        ("password := s3cr3tX", "password := [REDACTED]"),
        # Ruby's and PHP's dumps of a hash, and a form's field in brackets.
        ('{"password" => "s3cr3tX", "user" => "bob"}', '{"password" => "[REDACTED]", "user" => "bob"}'),
        ('{:api_key=>"s3cr3tX"}', '{:api_key=>"[REDACTED]"}'),
        ("[password] => s3cr3tX\n    [user] => bob", "[password] => [REDACTED]\n    [user] => bob"),
        ("user[password]=s3cr3tX&user[name]=bob", "user[password]=[REDACTED]&user[name]=bob"),
        ('"Authorization" => "Bearer abc1"', '"Authorization" => "[REDACTED]"'),
        ("[token] => abc=def1", "[token] => [REDACTED]"),  # read as after a colon: no empty value
        # A key of several words, its last word alone no secret key.
        ("Invalid API key: SG.abc123.def456", "Invalid API key: [REDACTED]"),
        ("Stripe Secret Key = 0a1b2c3d4e", "Stripe Secret Key = [REDACTED]"),
        ("AWS secret access key: wJalrXUtnFEMI", "AWS secret access key: [REDACTED]"),
        # XML elements (SOAP gateways' requests and faults), with a namespace, attributes, CDATA.
        ("<auth><password>s3cr3tX</password></auth>", "<auth><password>[REDACTED]</password></auth>"),
        ('<ns1:AuthToken type="x">\n  abc1\n</ns1:AuthToken>', '<ns1:AuthToken type="x">\n  [REDACTED]\n</ns1:AuthToken>'),
        ("<ApiKey><![CDATA[k3y]]></ApiKey>", "<ApiKey><![CDATA[[REDACTED]]]></ApiKey>"),
        ("cut at <token>abc1", "cut at <token>[REDACTED]"),
        ("cut at <token>abc1\nnext line", "cut at <token>[REDACTED]\nnext line"),
        # A URL percent-encoded inside another (a click tracker's link), once or twice.
        (
            "https://t.example/c?u=https%3A%2F%2Fapp.example%2Freset%3Ftoken%3Dabc1%26lang%3Den&id=9",
            "https://t.example/c?u=https%3A%2F%2Fapp.example%2Freset%3Ftoken%3D[REDACTED]%26lang%3Den&id=9",
        ),
        (
            "https://t.example/c?u=https%253A%252F%252Fa.example%252F%253Fapi%25255Fkey%253Dk1%2526x%253D1",
            "https://t.example/c?u=https%253A%252F%252Fa.example%252F%253Fapi%25255Fkey%253D[REDACTED]%2526x%253D1",
        ),
        ("next=postgresql%3A%2F%2Fapp%3As3cr3t%40db%2Fcrm", "next=postgresql%3A%2F%2Fapp%3A[REDACTED]%40db%2Fcrm"),
        ("next=https%3A%2F%2Fapp%3Ap%40ss%40db%2Fx", "next=https%3A%2F%2Fapp%3A[REDACTED]%40db%2Fx"),  # "@" in it
        ("state=user%5Bpassword%5D%3Dabc1", "state=user%5Bpassword%5D%3D[REDACTED]"),
        ("link https%3A%2F%2Fapp.example%2F%3Ftoken%3Dabc1 clicked", "link https%3A%2F%2Fapp.example%2F%3Ftoken%3D[REDACTED] clicked"),
        ("u=x%3Ftoken%3Dabc1} rest", "u=x%3Ftoken%3D[REDACTED]} rest"),  # no URL holds "}"
        # A credential holding an encoded URL's mask is one credential: no "]" left of it.
        ("basic authorization%253Dj8LsoAQ.X:\nnext", "basic [REDACTED]\nnext"),
        # Tokens known by their form, with no key before them.
        (
            "login link used: https://app.example/magic/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "login link used: https://app.example/magic/[REDACTED]",
        ),
        ("id eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. expired.", "id [REDACTED] expired."),
        ("key 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 was revoked", "key [REDACTED] was revoked"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc rejected", "[REDACTED] rejected"),
        ("xoxb-123456789012-abcdefABCDEF, ghp_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED], [REDACTED]"),
        ("mailgun key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "mailgun [REDACTED]"),
    ],
)
def test_credentials_inside_text_are_redacted(text, expected):
    assert R.redact_text(text) == expected
    assert R.redact_text(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "provider timeout",
        "password: required",
        "token: expired",
        "Bearer token missing",
        "basic auth failed",
        "Basic plan has no SMS",
        "at 2026-11-01T09:00:00Z: retry at 10:00",
        "token==None",
        "a=b and x: y",
        "see https://example.com/start?utm_source=mail",
        "mybearer abc123",
        "Authorization: Bearer",
        "token=[REDACTED]",
        "password  =  required",
        "token= user=bob",
        "if password == None",
        'WWW-Authenticate: Bearer realm="example", error="invalid_token"',
        "Authorization: missing or invalid",
        "Authorization: invalid Bearer token",
        '\\"token\\": null',
        '\\"token\\": \\"[REDACTED]\\"',
        'password: "[REDACTED]',
        '\\"token\\": \\"[REDACTED]',
        'password: "',
        "password:required",
        "at 10:00:00 on host:5432",
        "Invalid API key: missing",
        "<password></password> <token/> <b>token</b> <password>[REDACTED]</password>",
        "a -> b => c",
        ":password=>required",
        "https://t.example/c?u=https%3A%2F%2Fapp.example%2F%3Flang%3Den%26token%3D",
        "eyJhbGciOiJIUzI1NiJ9 alone is a header, sk_live_short, SG.short.x, key-notahexkey",
    ],
)
def test_text_that_only_looks_like_a_secret_is_kept_as_it_is(text):
    assert R.redact_text(text) is text


def test_a_token_known_by_its_form_is_redacted_in_any_string_of_a_payload():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    payload = {"note": jwt, "items": [f"magic link {jwt}"], "ok": "nothing here"}
    assert R.redact(payload) == {"note": REDACTED, "items": [f"magic link {REDACTED}"], "ok": "nothing here"}
    assert R.redact_url(f"https://app.example/magic/{jwt}") == f"https://app.example/magic/{REDACTED}"


def test_keys_added_by_flowledger_redact_keys_apply_inside_urls_and_text_too():
    extra = Redactor.from_environment(environ={"FLOWLEDGER_REDACT_KEYS": "ssn, pin, card_number"})
    assert extra.redact_url("https://x.example/?ssn=123-45-6789&a=1") == "https://x.example/?ssn=[REDACTED]&a=1"
    assert extra.redact_text("rejected: PIN: 4242") == "rejected: PIN: [REDACTED]"
    # A key added counts when written as words too.
    assert extra.redact_text("declined: card number: 4242424242424242") == "declined: card number: [REDACTED]"
    assert extra.redact_text("https://x.example/?token=t") == "https://x.example/?token=[REDACTED]"
    assert R.redact_url("https://x.example/?ssn=123-45-6789") == "https://x.example/?ssn=123-45-6789"


# --- properties ------------------------------------------------------------------------

_SECRET_NAMES = sorted(DEFAULT_SECRET_KEYS)
_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/", min_size=1, max_size=12)
_SECRET = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=10, max_size=16).map(lambda s: "s3cr3t" + s)


def _spellings(key: str) -> st.SearchStrategy[str]:
    """A key as services spell it: access_token, Access-Token, ACCESS.TOKEN, …"""
    return st.sampled_from(
        [key, key.upper(), key.replace("_", "-").title(), key.replace("_", "."), key.title().replace("_", "")]
    )


_FRAGMENT_WORDS = [
    "=", ": ", ":", '":"', '": "', "':'", "'", '"', " ", "\n", "\t", "&", "?", "#", "@", ";", ",", ".",
    "(", ")", "[", "]", "{", "}", "<", ">", "\\", "/", "://", "https://", "user:pw@", "Bearer ",
    "basic ", "BEARER\t", "token ", "Authorization: ", "Cookie: ", REDACTED, "==", "null", "%5F",
    "required", "09:00", '\\"', " = ", " : ", "ApiKey ", "%2B",
    # Shapes found since the fifty-second session: Ruby's and PHP's dumps, XML elements, keys
    # of several words, URLs encoded inside URLs, tokens known by their form.
    "=>", " => ", "</", "<![CDATA[", "]]>", ":=", "API ", "Auth ", "secret ", "%3D", "%253D",
    "%26", "%3F", "%3A%2F%2F", "%40", "%5B", "eyJhbGciOiJIUzI1NiJ9.", "eyJ", "SG.", "sk_live_",
]
_FRAGMENTS = st.one_of(_TOKEN, st.sampled_from(_SECRET_NAMES).flatmap(_spellings), st.sampled_from(_FRAGMENT_WORDS))
_TEXTS = st.lists(_FRAGMENTS, max_size=14).map("".join)


@pytest.mark.parametrize("text", ["https://user:pw@Authorization: 0", "https://user:pw@Authorization: abc1"])
def test_a_key_right_after_a_url_redacted_is_found_on_the_first_pass(text):
    # Found only once the URL had been redacted, a second redaction changed the text again.
    once = R.redact_text(text)
    assert once.endswith("Authorization: [REDACTED]") and R.redact_text(once) == once


@pytest.mark.parametrize("text", ["A://user:pw@Bearer 0", "https://x.example/p;token=[REDACTED]&Bearer 0"])
def test_a_url_that_held_a_secret_is_not_scanned_inside_so_a_second_redaction_changes_nothing(text):
    # Found by the full-stop property: scanned inside once its password was redacted, the URL
    # gave a Bearer credential after it to the second redaction only.
    once = R.redact_text(text)
    assert once.endswith("@Bearer 0") or once.endswith("&Bearer 0")
    assert R.redact_text(once) == once


@pytest.mark.parametrize(
    "text, expected",
    [
        # A key before a bracket that opens no key of its own is the name before the bracket,
        # whatever "[" stands earlier (another pair's, or a mask's): found by fuzzing, the
        # first redaction kept "passwd]:…" and the second, finding its own mask's "[" on the
        # line before, took "[REDACTED]\npasswd" for a key and masked it.
        ("token=1\npasswd]:%", f"token={REDACTED}\npasswd]:{REDACTED}"),
        ("passwd]: hunter22", f"passwd]: {REDACTED}"),
        ("[a]\npasswd]:%", f"[a]\npasswd]:{REDACTED}"),
        ("[x]\nlist]: abc1", "[x]\nlist]: abc1"),
        ("[a]\nauthorization]: abc1", f"[a]\nauthorization]: {REDACTED}"),
        ("[a]authorization]: abc1", f"[a]authorization]: {REDACTED}"),
        ("[a\nauthorization]: abc1", f"[a\nauthorization]: {REDACTED}"),
        ("[a\rauthorization]: abc1", f"[a\rauthorization]: {REDACTED}"),
        ("Array ( [password] => hunter22 [user] => bob )", f"Array ( [password] => {REDACTED} [user] => bob )"),
        # A secret key glued to a masked value after Bearer stays a key: the second
        # redaction took "password:[REDACTED]" for a credential.
        ("Bearer password:]x", f"Bearer password:{REDACTED}"),
        (f"Bearer password:{REDACTED}", f"Bearer password:{REDACTED}"),
        ("Bearer password:x", f"Bearer {REDACTED}"),
    ],
)
def test_a_shape_a_first_redaction_left_changes_nothing_redacted_again(text, expected):
    assert R.redact_text(text) == expected
    assert R.redact_text(expected) == expected


@SETTINGS
@given(st.one_of(_TEXTS, st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Z"]), max_size=40)))
def test_redacting_text_twice_changes_nothing(text):
    once = R.redact_text(text)
    assert R.redact_text(once) == once


@SETTINGS
@given(_TEXTS)
def test_redacting_a_url_twice_changes_nothing(text):
    once = R.redact_url(text)
    assert R.redact_url(once) == once


_PARAM_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=10).filter(
    lambda n: not R.is_secret_param(n)
)
# Any value a query holds but ? & ; and #, which each start a new parameter.
_PARAM_VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-._~%+/:@!$'()*,=", max_size=12)
_PARAMS = st.lists(st.tuples(_PARAM_NAME, _PARAM_VALUE), max_size=5)


@SETTINGS
@given(_PARAMS, _PARAMS, st.sampled_from(_SECRET_NAMES).flatmap(_spellings), _SECRET, st.sampled_from(["?", "#"]))
def test_a_secret_parameter_anywhere_in_a_query_or_fragment_is_redacted_and_nothing_else_changes(
    before, after, name, secret, mark
):
    def query(params):
        return ["=".join(p) for p in params]

    url = "https://user@app.example.com/p/1" + mark + "&".join([*query(before), f"{name}={secret}", *query(after)])
    redacted = R.redact_url(url)
    assert secret not in redacted
    assert redacted == url.replace(f"{name}={secret}", f"{name}={REDACTED}")
    # The same URL without the secret parameter is left alone, byte for byte.
    clean = "https://user@app.example.com/p/1" + mark + "&".join([*query(before), *query(after)])
    assert R.redact_url(clean) is clean


_PROSE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC0123456789.,:()-!?\n", max_size=30)


@SETTINGS
@given(_PROSE, _PROSE, st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Basic ", "basic\t"]), _SECRET)
def test_a_bearer_or_basic_credential_anywhere_in_a_message_is_redacted(before, after, scheme, secret):
    text = f"{before} {scheme}{secret} {after}"
    redacted = R.redact_text(text)
    assert secret not in redacted
    assert f"{scheme}{REDACTED}" in redacted


def test_a_credential_before_a_colon_is_still_the_credential_and_a_secret_key_there_a_key():
    assert R.redact_text("Basic dXNlcjpwYXNz: refused") == f"Basic {REDACTED}: refused"
    assert R.redact_text("Bearer x9Y8z7: expired") == f"Bearer {REDACTED}: expired"
    assert R.redact_text("Basic access_token: abc123XYZ") == f"Basic access_token: {REDACTED}"
    assert R.redact_text("bearer api_key:\tQ1w2e3r4") == f"bearer api_key:\t{REDACTED}"
    # Without a value after it, such a word is what follows the scheme: the credential.
    assert R.redact_text("Bearer client_secret, refused") == f"Bearer {REDACTED}, refused"


@SETTINGS
@given(
    _PROSE,
    _PROSE,
    st.sampled_from(_SECRET_NAMES).flatmap(_spellings),
    st.sampled_from(["=", ": ", ':\t', '"KEY": "', "'KEY':'", '"KEY":', " = ", "= ", " : ", "\t=\t", '"KEY" : "']),
    _SECRET,
)
# A secret key right after Bearer/Basic is a key, not the credential (its value was kept).
@example("BAsiC", "", "access_token", ": ", "s3cr3t0000000000")
@example("Bearer", "", "password", ":\t", "s3cr3t0000000000")
@example("BeArer", "", "access_token", " = ", "s3cr3t0000000000")
@example("BAsiC", "", "access_token", "= ", "s3cr3t0000000000")
def test_a_secret_keys_value_anywhere_in_a_message_is_redacted(before, after, key, separator, secret):
    pair = separator.replace("KEY", key) + secret if "KEY" in separator else key + separator + secret
    if separator.endswith(("\"", "'")):
        pair += separator[-1]
    text = f"{before} {pair} {after}"
    assert secret not in R.redact_text(text)


# Fragments with no quote in them: a quote left open before a key makes its quoted value run
# to the key's own quote (README: not found).
_UNQUOTED = st.lists(
    st.one_of(
        _TOKEN,
        st.sampled_from(_SECRET_NAMES).flatmap(_spellings),
        st.sampled_from([f for f in _FRAGMENT_WORDS if "'" not in f and '"' not in f]),
    ),
    max_size=10,
).map("".join)


# A secret written after each way of naming it: what goes before it, what closes it.
_WRITTEN = [
    ("{key}=", ""), ("{key}: ", ""), ("{key}:\t", ""), ("{key} = ", ""), ("{key}= ", ""), ("{key} : ", ""),
    ("{key}='", "'"), ('"{key}": "', '"'), ("'{key}':'", "'"), ('"{key}":', ""),
    ('\\"{key}\\": \\"', '\\"'), ("Bearer ", ""), ("basic\t", ""),
    ("{key}:", ""), ("{key} := ", ""), ("{key} => ", ""), ('"{key}" => "', '"'), (":{key}=>'", "'"),
    ("[{key}] => ", ""), ("user[{key}]=", ""), ("<{key}>", "</{key}>"), ('<ns:{key} a="1"> ', " </ns:{key}>"),
    ("<{key}><![CDATA[", "]]></{key}>"),
]


@SETTINGS
@given(_UNQUOTED, _UNQUOTED, st.sampled_from(_SECRET_NAMES).flatmap(_spellings), st.sampled_from(_WRITTEN), _SECRET)
# A full stop is no word of a key: "ACCESSTOKEN ." was read as a key of two words.
@example("ACCESSTOKEN", "", "access_token", (":{key}=>'", "'"), "s3cr3t0000000000")
# An XML tag's attributes are name="value": a second redaction read "<ACCESSTOKEN . \"access_token\" =>"
# as a tag.
@example("<ACCESSTOKEN", "", "access_token", ('"{key}" => "', '"'), "s3cr3t0000000000")
def test_a_secret_after_a_full_stop_among_any_unquoted_text_is_redacted(before, after, key, written, secret):
    # The fuzzer's shape: whatever comes before (URLs, other keys, schemes, brackets) ends
    # at a sentence's full stop; the pair after it loses its value.
    opening, closing = written
    text = f"{before} . {opening.format(key=key)}{secret}{closing} {after}"
    redacted = R.redact_text(text)
    assert secret not in redacted, text
    assert R.redact_text(redacted) == redacted


# Keys of several words whose last word alone is no secret key.
_WORDS = ["API key", "Api Key", "secret key", "Private Key", "AWS secret access key", "X API Key", "Auth Token"]


@SETTINGS
@given(_UNQUOTED, _PROSE, st.sampled_from(_WORDS), st.sampled_from([": ", ":", "=", " = ", " : ", ":\t"]), _SECRET)
def test_a_secret_after_a_key_of_several_words_is_redacted(before, after, words, separator, secret):
    text = f"{before} . Invalid {words}{separator}{secret} {after}"
    redacted = R.redact_text(text)
    assert secret not in redacted, text
    assert R.redact_text(redacted) == redacted


_QUERY = st.lists(st.tuples(_PARAM_NAME, _PARAM_VALUE.filter(lambda v: "=" not in v)), max_size=3)


@SETTINGS
@given(_QUERY, _QUERY, st.sampled_from(_SECRET_NAMES).flatmap(_spellings), _SECRET, st.integers(1, 3), _PROSE)
def test_a_secret_in_a_url_encoded_inside_a_url_is_redacted_at_any_depth(before, after, name, secret, depth, prose):
    # A click tracker wraps the link it counts: the link's own secret parameter, its
    # password, encoded once for each tracker around it.
    from urllib.parse import quote

    def query(params):
        return ["=".join(p) for p in params]

    inner = "https://app.example/p?" + "&".join([*query(before), f"{name}={secret}", *query(after)])
    with_password = f"postgresql://app:{secret}@db.example/crm"
    clean = "https://app.example/p?" + "&".join([*query(before), *query(after)])
    for link in (inner, with_password):
        wrapped = link
        for _ in range(depth):
            wrapped = quote(wrapped, safe="")
        url = f"https://t.example/c?u={wrapped}&id=9"
        for redacted in (R.redact_url(url), R.redact_text(f"{prose} {url} {prose}")):
            assert secret not in redacted, url
            assert R.redact_text(redacted) == redacted
    wrapped = clean
    for _ in range(depth):
        wrapped = quote(wrapped, safe="")
    url = f"https://t.example/c?u={wrapped}&id=9"
    assert R.redact_url(url) is url  # nothing secret in it: kept byte for byte


_B64URL = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_KNOWN = st.one_of(
    st.builds(
        "eyJ{}.{}.{}".format,
        st.text(alphabet=_B64URL, min_size=8, max_size=30),
        st.text(alphabet=_B64URL, max_size=30),
        st.text(alphabet=_B64URL, max_size=30),
    ),
    st.builds("SG.{}.{}".format, st.text(alphabet=_B64URL, min_size=22, max_size=22), st.text(alphabet=_B64URL, min_size=43, max_size=43)),
    st.builds("{}_{}_{}".format, st.sampled_from(["sk", "rk"]), st.sampled_from(["live", "test"]), st.text(alphabet=_B64URL[:62], min_size=24, max_size=30)),
    st.builds("xoxb-{}".format, st.text(alphabet=_B64URL[:63], min_size=20, max_size=40)),
    st.builds("ghp_{}".format, st.text(alphabet=_B64URL[:62], min_size=36, max_size=36)),
)


@SETTINGS
@given(_PROSE, _PROSE, _KNOWN, st.sampled_from(["{}", "({})", '"{}"', "https://app.example/m/{}", "id={}", "<t>{}</t>"]))
def test_a_token_known_by_its_form_is_redacted_wherever_it_stands(before, after, token, around):
    text = f"{before} {around.format(token)} {after}"
    for redacted in (R.redact_text(text), R.redact_url(around.format(token))):
        assert token not in redacted, text
        assert R.redact_text(redacted) == redacted


# What a b64token does not hold, after a credential: more of the credential.
_NOT_B64 = st.text(alphabet="#%&*|$\\{`^@[(!:?.", min_size=1, max_size=4)


@SETTINGS
@given(_PROSE, _PROSE, st.sampled_from(["Bearer ", "bearer ", "Basic ", "basic\t"]), _SECRET, _NOT_B64, _TOKEN)
def test_a_credential_followed_by_characters_a_token_does_not_hold_is_redacted_whole(
    before, after, scheme, secret, odd, more
):
    # A credential that is a secret key's name ("s3cr3tpassphrase", "…token") followed by a
    # colon is that key, its value what follows ("Basic access_token: abc").
    assume(not R.is_secret(secret))
    for credential in (secret + odd, secret + odd + more, more + odd + secret):
        text = f"{before} {scheme}{credential} {after}"
        redacted = R.redact_text(text)
        assert secret not in redacted, text
        assert R.redact_text(redacted) == redacted


@SETTINGS
@given(st.data(), st.integers(1, 3), st.sampled_from(["compact", "spaced"]))
def test_json_quoted_inside_json_strings_keeps_no_secret_at_any_depth(data, depth, form):
    # A provider's body quoted in a message, quoted again by each layer that logged it.
    secret = "s3cr3t-" + data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=20))
    payload = data.draw(payload_with_secret(secret))
    text = orjson.dumps(payload).decode() if form == "compact" else json.dumps(payload)
    for _ in range(depth):
        text = json.dumps(text)
    redacted = R.redact_text(f"provider answered {text}")
    assert secret not in redacted
    assert R.redact_text(redacted) == redacted
    body = redacted.removeprefix("provider answered ")
    for _ in range(depth):
        body = json.loads(body)
    json.loads(body)  # JSON stays JSON at every depth


@SETTINGS
@given(st.data(), st.sampled_from(["json", "repr"]))
def test_a_payload_quoted_as_json_or_a_repr_inside_a_message_keeps_no_secret(data, form):
    # The dict rule's own property, for the same payload pasted into an error text.
    secret = "s3cr3t-" + data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=20))
    payload = data.draw(payload_with_secret(secret))
    text = orjson.dumps(payload).decode() if form == "json" else repr(payload)
    redacted = R.redact_text(f"provider answered {text}")
    assert secret not in redacted
    if form == "json":
        orjson.loads(redacted.removeprefix("provider answered "))  # JSON stays JSON


# --- events ----------------------------------------------------------------------------

def _failed(error, **fields):
    return validate_event(step("step.failed", "r1", error=error, **fields))


def test_redact_event_covers_the_url_string_errors_reasons_and_strings_inside_free_form_fields():
    clicked = validate_event(ev("message.clicked", message_id="m1", url="https://u:pw@app.example.com/r?token=abc&utm=1"))
    assert R.redact_event(clicked)["url"] == "https://u:[REDACTED]@app.example.com/r?token=[REDACTED]&utm=1"
    assert clicked["url"] == "https://u:pw@app.example.com/r?token=abc&utm=1"  # the input is not changed

    assert R.redact_event(_failed("401: Authorization: Bearer eyJabc.def"))["error"] == "401: Authorization: Bearer [REDACTED]"
    failed = R.redact_event(_failed({"message": "Basic dXNlcjpwYXNz refused", "status": 401}))
    assert failed["error"] == {"message": "Basic [REDACTED] refused", "status": 401}
    run_failed = validate_event(ev("run.failed", run_id="r1", error="gave up: api_key=k-123"))
    assert R.redact_event(run_failed)["error"] == "gave up: api_key=[REDACTED]"
    message_failed = validate_event(ev("message.failed", message_id="m1", error="token: t0k3n-1 revoked"))
    assert R.redact_event(message_failed)["error"] == "token: [REDACTED] revoked"
    bounced = validate_event(ev("message.bounced", message_id="m1", reason="550 see https://x.example/?secret=s1"))
    assert R.redact_event(bounced)["reason"] == "550 see https://x.example/?secret=[REDACTED]"

    started = validate_event(
        step(
            "step.started",
            "r1",
            request={"url": "https://crm.example.com/v2?access_token=ya29&q=1", "body": "grant_type=x&client_secret=cs"},
        )
    )
    assert R.redact_event(started)["request"] == {
        "url": "https://crm.example.com/v2?access_token=[REDACTED]&q=1",
        "body": "grant_type=x&client_secret=[REDACTED]",
    }
    succeeded = validate_event(step("step.succeeded", "r1", response='{"access_token": "abc", "expires_in": 3599}'))
    assert R.redact_event(succeeded)["response"] == '{"access_token": "[REDACTED]", "expires_in": 3599}'
    queued = validate_event(
        ev("message.queued", message_id="m1", channel="email", recipient="u", raw={"links": ["https://x.example/?apikey=z"]})
    )
    assert R.redact_event(queued)["raw"] == {"links": ["https://x.example/?apikey=[REDACTED]"]}


def test_events_with_nothing_secret_are_returned_as_they_are():
    for event in [
        validate_event(ev("message.clicked", message_id="m1", url="https://example.com/start")),
        validate_event(ev("message.clicked", message_id="m1", url="https://example.com/p?utm_source=mail")),
        _failed("provider timeout"),
        _failed({"message": "CRM returned 500: Internal Server Error", "at": "2026-11-01T09:00:00Z"}),
        validate_event(triggered("r1", data={"plan": "pro", "links": ["https://example.com/a"]})),
        validate_event(ev("message.bounced", message_id="m1", reason="mailbox full")),
    ]:
        assert R.redact_event(event) is event


# --- every way in ----------------------------------------------------------------------

PLANTED = {
    "query": "abc123secretq",
    "password": "pa55w0rd-xyz",
    "fragment": "ya29.a0AfH6SMtok",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sigQ1w2e3",
    "basic": "dXNlcjpwYXNzd29yZA==",
    "dsn": "s3cr3t-db-pw",
    "form": "cs-98765-secret",
}


def planted_events():
    """A run and a message whose URLs and error texts carry the PLANTED secrets."""
    p = PLANTED
    return [
        triggered("r1", data={"callback": f"https://hooks.example.com/cb?api_key={p['query']}&x=1"}),
        ev("run.started", run_id="r1"),
        step("step.started", "r1", request={"url": f"https://crm.example.com/v2#access_token={p['fragment']}"}),
        ev("message.queued", message_id="m1", channel="email", recipient="u1", run_id="r1", step="email-1"),
        ev(
            "message.clicked",
            message_id="m1",
            url=f"https://user:{p['password']}@app.example.com/reset?token={p['query']}&utm_source=mail",
        ),
        ev("message.failed", message_id="m1", error=f"could not connect to postgresql://app:{p['dsn']}@db:5432/crm"),
        step("step.failed", "r1", error=f"401 from provider: Authorization: Bearer {p['bearer']}"),
        ev("run.failed", run_id="r1", error={"message": f"gave up: Basic {p['basic']} refused", "body": f"client_secret={p['form']}"}),
    ]


def stored_bytes(store_path):
    """Everything the store's files hold."""
    return b"".join(open(store_path + s, "rb").read() for s in ("", "-wal") if os.path.exists(store_path + s))


def assert_nothing_planted_is_stored(store_path):
    raw = stored_bytes(store_path)
    assert b"[REDACTED]" in raw
    for secret in PLANTED.values():
        assert secret.encode() not in raw, secret


def test_flowledger_append_stores_no_secret_inside_urls_or_error_texts(store_path):
    runner = CliRunner()
    events = planted_events()
    text = "".join(orjson.dumps(e).decode() + "\n" for e in events)
    result = runner.invoke(cli, ["--store", store_path, "append", "-"], input=text, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"appended": len(events), "duplicates": 0}
    assert_nothing_planted_is_stored(store_path)

    replayed = orjson.loads(runner.invoke(cli, ["--store", store_path, "replay", "r1", "--json"]).stdout)["events"]
    bodies = {e["event"]["type"]: e["event"] for e in replayed}
    assert bodies["step.failed"]["error"] == "401 from provider: Authorization: Bearer [REDACTED]"
    assert bodies["run.failed"]["error"] == {"message": "gave up: Basic [REDACTED] refused", "body": "client_secret=[REDACTED]"}
    assert bodies["run.triggered"]["data"] == {"callback": "https://hooks.example.com/cb?api_key=[REDACTED]&x=1"}
    assert b'"url":"https://user:[REDACTED]@app.example.com/reset?token=[REDACTED]&utm_source=mail"' in stored_bytes(store_path)

    # A resend is compared with the stored body byte for byte: redacted alike, a duplicate.
    again = runner.invoke(cli, ["--store", store_path, "append", "-"], input=text, catch_exceptions=False)
    assert again.exit_code == 0 and orjson.loads(again.stdout) == {"appended": 0, "duplicates": len(events)}


def test_an_input_read_by_a_forked_reader_is_redacted_alike(store_path, monkeypatch):
    # Large inputs are read, validated and redacted by a child process (ingest_process).
    monkeypatch.setattr(ingest_process, "FORK_FROM_BYTES", 0)
    # Forked even where an earlier test left a thread running in this process.
    monkeypatch.setattr(ledger, "worth_forking", lambda stream: True)
    read_by_child = []
    monkeypatch.setattr(ledger, "forked_candidates", lambda *a, **k: read_by_child.append(1) or forked_candidates(*a, **k))
    log = open_log(store_path)
    result, _ = ledger.append_input(log, jsonl(planted_events()))
    log.close()
    assert read_by_child and result.appended == len(planted_events())
    assert_nothing_planted_is_stored(store_path)


def test_flowledger_append_of_a_provider_export_stores_no_secret_in_the_clicked_url(store_path, tmp_path):
    url = f"https://app.example.com/magic?access_token={PLANTED['query']}&utm_source=mail"
    export = tmp_path / "sendgrid.json"
    export.write_bytes(
        orjson.dumps([{"event": "click", "email": "u1@example.com", "timestamp": 1793523600, "sg_event_id": "e-click",
                       "sg_message_id": "sgmsg1.filter0001", "url": url}])
    )
    result = CliRunner().invoke(cli, ["--store", store_path, "append", "--format", "sendgrid", str(export)])
    assert result.exit_code == 0, result.output
    raw = stored_bytes(store_path)
    assert PLANTED["query"].encode() not in raw
    assert b"access_token=[REDACTED]&utm_source=mail" in raw


def test_the_http_api_stores_no_secret_inside_urls_or_error_texts(store_path):
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "w", "write")
    log.close()
    with TestClient(create_app(store_path)) as client:
        r = client.post("/v1/events", json=planted_events(), headers={"X-API-Key": secret})
        assert r.status_code == 200, r.text
        assert r.json()["appended"] == len(planted_events())
    assert_nothing_planted_is_stored(store_path)


def test_provider_webhooks_store_no_secret_in_the_clicked_url(store_path):
    url = f"https://user:{PLANTED['password']}@app.example.com/r?token={PLANTED['query']}&utm_source=mail"
    events = [{"event": "click", "email": "u1@example.com", "timestamp": 1793523600, "sg_event_id": "e-click",
               "sg_message_id": "sgmsg1.filter0001", "url": url}]
    body = orjson.dumps(events)
    with TestClient(create_app(store_path, provider_secrets=PROVIDER_SECRETS)) as client:
        r = client.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
        assert r.status_code == 200, r.text
    raw = stored_bytes(store_path)
    assert b"[REDACTED]" in raw
    assert PLANTED["password"].encode() not in raw and PLANTED["query"].encode() not in raw


@pytest.mark.parametrize("command", ["retry", "cancel", "cancel-by-key"])
def test_an_operators_reason_is_redacted_as_any_text(tmp_path, monkeypatch, command):
    from flowledger import ledger as ledger_
    from flowledger.store import open_log
    from tests.conftest import ev as ev_, triggered as triggered_
    from tests.histories import jsonl as jsonl_

    monkeypatch.setenv("FLOWLEDGER_REDACT_KEYS", "ssn")
    log = open_log(str(tmp_path / "s.db"))
    events = [triggered_("r1", trigger={"source": "api", "cancellation_key": "k1"})]
    if command == "retry":
        events += [ev_("run.started", run_id="r1"), ev_("run.failed", run_id="r1", error="x")]
    ledger_.append_input(log, jsonl_(events))
    reason = "rotated: token=abc123def and ssn=123-45-6789 (Bearer eyJhbGciOiJIUzI1NiJ9)"
    if command == "retry":
        ledger_.retry_run(log, "r1", reason=reason)
    elif command == "cancel":
        ledger_.cancel_run(log, "r1", reason=reason)
    else:
        ledger_.cancel_by_key(log, "k1", reason=reason)
    stored = log.run_events("r1")[-1].body["reason"]
    log.close()
    assert stored == "rotated: token=[REDACTED] and ssn=[REDACTED] (Bearer [REDACTED])"
