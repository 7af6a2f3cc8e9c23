"""Signed URLs (S3, CloudFront, Google Cloud Storage, an Azure SAS) are credentials until
they expire: their signatures are redacted before an event is stored, in a URL, in text,
inside an object and inside another URL. So are the keys of more services known by their
form (Brevo, Mailchimp, HubSpot, OpenAI, Anthropic, npm, GitLab, Shopify, Slack's app-level
tokens), and such tokens inside a URL percent-encoded in another (a magic link inside a
click tracker's). Lookalikes are kept; an older release's copy resent is a duplicate, and
scan-secrets finds it."""

from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import REDACTED, SIGNED_URL_PARAMS, Redactor
from flowledger.domain.vocabulary import validate_event
from flowledger.ingest import IngestOptions
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_redaction_pairs_and_channels import assert_redacted_by_form
from tests.test_secret_scan import stored_as_an_older_release_did

R = Redactor()

_S3 = (
    "https://invoices.s3.eu-west-1.amazonaws.com/2026/inv-1.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20261207T090000Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
)
_S3_REDACTED = _S3.rpartition("=")[0] + "=" + REDACTED

SIGNED = [
    (_S3, _S3_REDACTED),
    (
        "https://acme.blob.core.windows.net/reports/r.csv?sv=2022-11-02&se=2027-01-01T00%3A00%3A00Z&sr=b&sp=r"
        "&sig=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmE%3D",
        "https://acme.blob.core.windows.net/reports/r.csv?sv=2022-11-02&se=2027-01-01T00%3A00%3A00Z&sr=b&sp=r"
        f"&sig={REDACTED}",
    ),
    (
        "https://storage.googleapis.com/acme/export.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Signature=0a1b2c3d4e5f60718293a4b5c6d7e8f9&X-Goog-Expires=900",
        "https://storage.googleapis.com/acme/export.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        f"&X-Goog-Signature={REDACTED}&X-Goog-Expires=900",
    ),
    (
        "https://d111111abcdef8.cloudfront.net/video.mp4?Expires=1798761600&Signature=nitfHRCrtziwO2H~Kq-_7gk"
        "&Key-Pair-Id=K2JCJMDEHXQW5F",
        f"https://d111111abcdef8.cloudfront.net/video.mp4?Expires=1798761600&Signature={REDACTED}"
        "&Key-Pair-Id=K2JCJMDEHXQW5F",
    ),
    # In a fragment, and a name percent-encoded.
    ("https://files.example.com/f#sig=abc123", f"https://files.example.com/f#sig={REDACTED}"),
    ("https://files.example.com/f?x%2Dgoog%2Dsignature=abc123", f"https://files.example.com/f?x%2Dgoog%2Dsignature={REDACTED}"),
    # Other parameters that only look like one: kept.
    ("https://files.example.com/f?signed=1&sign=up&sigma=2&signatures_count=3&signer=bob", None),
    ("https://files.example.com/sig/signature?page=2", None),
]


@pytest.mark.parametrize("url, expected", SIGNED)
def test_a_signed_urls_signature_is_redacted_wherever_the_url_stands(url, expected):
    expected = url if expected is None else expected
    assert R.redact_url(url) == expected
    assert R.redact_url(expected) == expected
    assert R.redact_text(f"GET {url} -> 403 AccessDenied") == f"GET {expected} -> 403 AccessDenied"
    assert R.redact({"response": {"download_url": url}}) == {"response": {"download_url": expected}}
    if expected == url:
        assert R.redact_url(url) is url  # kept byte for byte, not remade


def test_a_signed_url_inside_a_click_trackers_link_loses_its_signature():
    tracked = "https://t.sendgrid.net/ls/click?upn=" + quote(_S3, safe="")
    redacted = R.redact_url(tracked)
    assert "5d672d79c15b" not in redacted
    assert redacted.endswith("X-Amz-Signature%3D" + REDACTED)
    assert quote(_S3.split("&X-Amz-Signature")[0], safe="") in redacted  # the rest kept
    clicked = validate_event(ev("message.clicked", message_id="m1", url=tracked))
    assert R.redact_event(clicked)["url"] == redacted


def test_an_objects_signature_is_no_credential_and_is_kept():
    # A webhook's signature is an HMAC of its own body (Mailgun's, Twilio's header): kept,
    # as are "sig" and "signature" written as pairs in text outside a URL.
    body = {"signature": {"timestamp": "1700000000", "signature": "ab12cd"}, "X-Twilio-Signature": "ZGVm"}
    assert R.redact({"raw": body}) == {"raw": body}
    assert R.redact_text("signature=ab12cd; sig=ef34") == "signature=ab12cd; sig=ef34"
    assert not R.is_secret("signature") and not R.is_secret("sig")


def test_a_url_parameters_name_is_secret_as_a_key_or_as_a_signature():
    for name in ("X-Amz-Signature", "x%2Damz%2Dsignature", "Signature", "sig", "token", "hub.verify_token"):
        assert R.is_secret_param(name), name
    for name in ("signed", "sigma", "utm_source", "token_type", None, 3):
        assert not R.is_secret_param(name), name
    assert not Redactor(keys=["token"]).is_secret_param("sig") and Redactor(keys=["token"]).is_secret_param("token")


def test_a_credential_named_as_a_secret_key_before_a_colon_is_that_key():
    # "Basic access_token: abc" keeps the key and loses its value; so does a name that is a
    # key by its last word.
    assert R.redact_text("Bearer s3cr3tpassphrase: abc123") == f"Bearer s3cr3tpassphrase: {REDACTED}"


def test_signatures_come_with_the_default_keys_not_with_keys_given_instead():
    assert Redactor(extra=["ssn"]).redact_url(_S3) == _S3_REDACTED
    assert Redactor(keys=["password"]).redact_url(_S3) == _S3
    assert Redactor(keys=()).redact_url(_S3) == _S3
    azure = "https://acme.blob.core.windows.net/r.csv?sv=2022-11-02&sig=Zm9vYmFy%3D"
    assert Redactor(extra=["ssn"]).redact_url(azure).endswith(f"&sig={REDACTED}")
    assert Redactor(keys=["password"]).redact_url(azure) == azure


_SEPARATORS = st.sampled_from(["-", "_", ".", ""])
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.lists(_WORD, max_size=2),
    separator=_SEPARATORS,
    ending=st.sampled_from(SIGNED_URL_PARAMS[:2]),  # signature, hmac: last words
    upper=st.booleans(),
    value=st.text(alphabet="abcdefABCDEF0123456789%~-_.+/=", min_size=1, max_size=40),
)
def test_any_parameter_named_for_a_signature_is_redacted_and_redacting_twice_changes_nothing(
    prefix, separator, ending, upper, value
):
    name = separator.join([*prefix, ending])
    name = name.upper() if upper else name
    url = f"https://files.example.com/a?x=1&{name}={value}&y=2"
    redacted = R.redact_url(url)
    assert redacted == f"https://files.example.com/a?x=1&{name}={REDACTED}&y=2"
    assert R.redact_url(redacted) == redacted


# --- tokens known by their form ------------------------------------------------------------

_HEX = "0123456789abcdef" * 2
TOKENS = [
    "sk-proj-T3BlbkFJabcDEF0123456789ghiJKLmnoPQR_stu-VWX",
    "sk-svcacct-abcDEF0123456789ghiJKLmnoPQRstu",
    "sk-ant-api03-abcDEF0123456789ghiJKLmnoPQR_stuVWX-yzAA",
    "sk-ant-admin01-abcDEF0123456789ghiJKLmnoPQRstu",
    "sk-abcDEF0123456789ghiJKLmnoPQRstuVWXyz0123456789ab",  # OpenAI's older keys: 48 after sk-
    "npm_abcDEF0123456789hijKLMnoPQRstuVWXyzA",  # no other key's hint in it ("gh", "sk-", …)
    "glpat-abcDEF0123456789_ghi-JK",
    "shpat_" + _HEX,
    "shpss_" + _HEX.upper(),
    "xapp-1-A0123BCDE-4567890123-abcdef0123456789",
    "xkeysib-" + _HEX * 2 + "-AbCdEfGh12345678",
    "xsmtpsib-" + _HEX * 2 + "-AbCdEfGh12345678",
    _HEX + "-us21",
    "pat-na1-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "pat-eu1-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
]

FIXED_LENGTH = {t for t in TOKENS if t.startswith(("npm_", "shp", "xkeysib-", "xsmtpsib-", "pat-", _HEX))}


@pytest.mark.parametrize("token", TOKENS)
def test_a_services_key_is_redacted_by_its_form_with_no_key_before_it(token):
    assert_redacted_by_form(token, token in FIXED_LENGTH)
    for text, expected in [
        (f"step ai-summary failed: invalid key {token}.", f"step ai-summary failed: invalid key {REDACTED}."),
        (f"https://api.example.com/v1?k={token}&x=1", f"https://api.example.com/v1?k={REDACTED}&x=1"),
    ]:
        assert R.redact_text(text) == expected
        assert R.redact_text(expected) == expected


_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMiLCJleHAiOjE4MDB9.c2lnbmF0dXJlYWJjZGVmZ2hp"


@pytest.mark.parametrize("token", [_JWT, "sk_live_51Habcdefghijklmn", "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", *TOKENS])
@pytest.mark.parametrize("times", [1, 2, 3])
def test_a_token_known_by_its_form_inside_a_url_encoded_in_another_is_redacted(token, times):
    # A magic link's token in its path, or under a parameter of no secret name, inside a
    # click tracker's link: each escape before it ends in a digit or letter of no word.
    for link in (f"https://app.example.com/magic/{token}", f"https://app.example.com/in?next=%2F&code={token}"):
        encoded = link
        for _ in range(times):
            encoded = quote(encoded, safe="")
        tracked = f"https://t.example/ls/click?u={encoded}&id=7"
        redacted = R.redact_url(tracked)
        assert token not in redacted and redacted.endswith(f"{REDACTED}&id=7"), redacted
        assert redacted.replace(REDACTED, token) == tracked  # the rest kept byte for byte
        assert R.redact_text(f"clicked {tracked}") == f"clicked {redacted}"
    # Glued to a word after the escape: no such token (in a path of no one-time link's).
    glued = quote(f"https://app.example.com/files/x{token}", safe="")
    assert R.redact_url(f"https://t.example/c?u={glued}") == f"https://t.example/c?u={glued}"


@pytest.mark.parametrize(
    "text",
    [
        "sk-learn", "task-abcDEF0123456789ghiJKLmnoPQRstuVWXyz0123456789ab", "sk-abcDEF0123456789",
        "npm_abc", "glpat-short", "shpat_" + _HEX[:-1], "shpat_" + "g" * 32, "xapp-abc",
        "xkeysib-" + _HEX, _HEX + "-usage", _HEX[:-1] + "-us1", "us-east-1", "pat-na1-0a1b2c3d",
        "my-user-id", "key-value-store", "the desk-top is a sib-ling of pat-terns",
    ],
)
def test_a_lookalike_of_a_services_key_is_kept(text):
    assert R.redact_text(text) is text


# --- through the log ---------------------------------------------------------------------


def _clicked(message_id, url):
    return ev("message.clicked", message_id=message_id, url=url)


def test_appended_events_keep_no_signature_and_an_older_releases_copy_is_a_duplicate_when_resent(log):
    events = [
        triggered("r1", data={"report": _S3, "openai": TOKENS[0]}),
        ev("message.queued", run_id="r1", step="email-1", message_id="m1", channel="email", recipient="u@x.io"),
        _clicked("m1", _S3),
    ]
    ledger.append_input(log, jsonl(events))
    stored = [e.body for e in log.run_events("r1")]
    text = orjson.dumps(stored).decode()
    assert "5d672d79c15b" not in text and TOKENS[0] not in text
    assert stored[0]["data"] == {"report": _S3_REDACTED, "openai": REDACTED}
    # Stored whole by a release that knew no such rule (a redactor of no keys keeps all),
    # then sent again: a duplicate, the stored event unchanged.
    older = triggered("r2", data={"report": _S3, "openai": TOKENS[0]})
    ledger.append_input(log, jsonl([older]), IngestOptions(redactor=Redactor(keys=())))
    before = log.run_events("r2")[0].body
    assert before["data"]["report"] == _S3
    result, _ = ledger.append_input(log, jsonl([older]))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r2")[0].body == before


def test_scan_secrets_finds_signatures_and_keys_an_older_release_stored(log):
    stored_as_an_older_release_did(
        log,
        [
            triggered("r1", data={"report": _S3}),
            ev("run.failed", run_id="r1", error=f"anthropic said 401 for {TOKENS[2]}"),
            triggered("r2", data={"report": "https://files.example.com/f?signed=1"}),
            ev("run.failed", run_id="r2", error=f"sent https://t.example/c?u=https%3A%2F%2Fapp.io%2Fmagic%2F{_JWT}"),
        ],
    )
    scan = ledger.scan_secrets(log, Redactor())
    assert (scan.events_read, scan.found) == (4, 3)
    places = {(f.type, f.run_id, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {
        ("run.triggered", "r1", "data.report"): _S3_REDACTED,
        ("run.failed", "r1", "error"): f"anthropic said 401 for {REDACTED}",
        ("run.failed", "r2", "error"): f"sent https://t.example/c?u=https%3A%2F%2Fapp.io%2Fmagic%2F{REDACTED}",
    }


# --- URLs written with their slashes escaped, or with no scheme --------------------------

ESCAPED = [
    # PHP's json_encode, and others, write a URL's slashes as \/.
    (
        r'{"notify":"https:\/\/hooks.slack.com\/services\/T0AB12CD3\/B0AB12CD3\/abcdefghijklmnopqrstuvwx"}',
        r'{"notify":"https:\/\/hooks.slack.com\/services\/T0AB12CD3\/B0AB12CD3\/[REDACTED]"}',
    ),
    (
        r'"https:\/\/discord.com\/api\/webhooks\/123456789\/abcDEF-ghi_jkl\/slack"',
        r'"https:\/\/discord.com\/api\/webhooks\/123456789\/[REDACTED]\/slack"',
    ),
    (
        r'"https:\/\/acme.webhook.office.com\/webhookb2\/a1b2@c3d4\/IncomingWebhook\/0a1b2c3d\/7f8e","n":1',
        r'"https:\/\/acme.webhook.office.com\/webhookb2\/a1b2@c3d4\/IncomingWebhook\/[REDACTED]","n":1',
    ),
    (
        r'"https:\/\/api.telegram.org\/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw\/sendMessage"',
        r'"https:\/\/api.telegram.org\/bot[REDACTED]\/sendMessage"',
    ),
    (r'{"dsn":"postgres:\/\/app:pw1234@db.internal\/crm"}', r'{"dsn":"postgres:\/\/app:[REDACTED]@db.internal\/crm"}'),
    (r'"postgres:\/\/app:pw:12@db"', r'"postgres:\/\/app:[REDACTED]@db"'),  # the password from the user's colon
    (
        r'"https:\/\/acme.webhook.office.com\/webhookb2\/a1b2-c3d4\/IncomingWebhook\/0a1b2c3d"',
        r'"https:\/\/acme.webhook.office.com\/webhookb2\/a1b2-c3d4\/IncomingWebhook\/[REDACTED]"',
    ),
    (
        r'{"file":"https:\/\/b.s3.amazonaws.com\/f.pdf?X-Amz-Date=1&X-Amz-Signature=5d672d79c15b"}',
        r'{"file":"https:\/\/b.s3.amazonaws.com\/f.pdf?X-Amz-Date=1&X-Amz-Signature=[REDACTED]"}',
    ),
    # No scheme: a pair after ? or & is a URL's parameter wherever it stands.
    ("fetch b.s3.amazonaws.com/f.pdf?X-Amz-Signature=5d672d79c15b&x=1 failed", f"fetch b.s3.amazonaws.com/f.pdf?X-Amz-Signature={REDACTED}&x=1 failed"),
    ("see files.example.com/f?sv=1&sig=Zm9v%3D (expired)", f"see files.example.com/f?sv=1&sig={REDACTED} (expired)"),
    # Kept: a user and no password, an address, a signature pair outside a URL's query.
    (r'"https:\/\/bob@example.com\/x" and ops@example.com', None),
    (r"signature=ab12 sig=cd34", None),
    ("f?sig:abc123 f?signature: 5d672d79c15b", None),  # a URL's parameters take "="
    (r'"https:\/\/hooks.slack.com\/apps"', None),
]


@pytest.mark.parametrize("text, expected", ESCAPED)
def test_a_urls_secret_is_redacted_with_its_slashes_escaped_or_with_no_scheme(text, expected):
    expected = text if expected is None else expected
    assert R.redact_text(text) == expected
    assert R.redact_text(expected) == expected
    assert R.redact({"response": {"body": text}}) == {"response": {"body": expected}}
    assert R.redact_text(expected) is expected  # nothing left to hide: the same string
    if expected == text:
        assert R.redact_text(text) is text
