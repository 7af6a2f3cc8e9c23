"""Keys named for a secret by their last words (``webhook_secret``, ``X-Postmark-Server-Token``,
``verify_token``, ``SharedAccessKey``), private keys' PEM blocks and URLs that are credentials
themselves (Slack, Teams and Discord webhooks, Telegram bots, Google API keys) are redacted
before an event is stored, as the default keys are, in objects, header lists, text and URLs;
lookalikes that hold no secret (``total_tokens``, ``token_type``, ``access_key_id``) are kept. An event an
older release stored with such a secret is a duplicate when resent, and scan-secrets finds it."""

from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import REDACTED, SECRET_KEY_ENDINGS, Redactor
from flowledger.domain.vocabulary import validate_event
from flowledger.ingest import IngestOptions
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_secret_scan import stored_as_an_older_release_did

R = Redactor()
SECRET = "s3cr3tvalue1"

NAMED_FOR_A_SECRET = [
    "webhook_secret",
    "signing_secret",
    "apiSecret",
    "X-Postmark-Server-Token",
    "verify_token",
    "hub.verify_token",
    "bot_token",
    "SharedAccessKey",
    "AccountKey",
    "Mailgun-Signing-Key",
    "encryptionKey",
    "master.key",
    "auth_key",
    "smtp_password",
    "db-passwd",
    "PASSPHRASE",
    "aws_credentials",
    "Credential",
]

# Named like a secret's key, holding none: counts, types, public and identifying keys.
LOOKALIKES = [
    "total_tokens",
    "max_tokens",
    "token_type",
    "token_count",
    "publishable_key",
    "access_key_id",
    "private_key_id",
    "idempotency_key",
    "cache_key",
    "secret_name",
    "keyword",
    "monkey",
]


@pytest.mark.parametrize("key", NAMED_FOR_A_SECRET)
def test_a_key_ending_in_a_secret_word_is_redacted_wherever_it_stands(key):
    assert R.is_secret(key)
    assert R.redact({"config": {key: SECRET, "plan": "pro"}}) == {"config": {key: REDACTED, "plan": "pro"}}
    assert R.redact({"config": {key: {"nested": SECRET}}}) == {"config": {key: REDACTED}}
    # Header lists, as Postmark's {"Name": …, "Value": …} and as pairs.
    assert R.redact({"Headers": [{"Name": key, "Value": SECRET}]}) == {"Headers": [{"Name": key, "Value": REDACTED}]}
    assert R.redact({"headers": [[key, SECRET]]}) == {"headers": [[key, REDACTED]]}
    # Written into a message, and as a URL's parameter.
    assert R.redact_text(f"rejected {key}: {SECRET} (401)") == f"rejected {key}: {REDACTED} (401)"
    assert R.redact_text(f"{key}={SECRET}&plan=pro") == f"{key}={REDACTED}&plan=pro"
    assert R.redact_text(f'{{"{key}": "{SECRET}"}}') == f'{{"{key}": "{REDACTED}"}}'
    url = f"https://app.example.com/cb?{key}={SECRET}&plan=pro"
    assert R.redact_url(url) == f"https://app.example.com/cb?{key}={REDACTED}&plan=pro"


@pytest.mark.parametrize("key", LOOKALIKES)
def test_a_key_that_only_looks_like_a_secrets_is_kept(key):
    assert not R.is_secret(key)
    body = {"usage": {key: "value1234", "n": 3}, "headers": [{"name": key, "value": "value1234"}]}
    assert R.redact(body) is body
    for text in (f"{key}: value1234", f"{key}=value1234", f"https://app.example.com/cb?{key}=value1234"):
        assert R.redact_text(text) is text


def test_words_of_a_secrets_name_written_apart_make_a_key_too():
    assert R.redact_text(f"Mailgun webhook signing key = {SECRET}") == f"Mailgun webhook signing key = {REDACTED}"
    assert R.redact_text(f"Invalid Postmark server token: {SECRET}") == f"Invalid Postmark server token: {REDACTED}"
    assert R.redact_text(f"pass phrase: {SECRET}") == f"pass phrase: {REDACTED}"
    assert R.redact_text("shared access key: abc123=") == f"shared access key: {REDACTED}"


def test_the_endings_come_with_the_default_keys_not_with_keys_given_instead():
    assert Redactor(extra=["ssn"]).redact({"webhook_secret": SECRET, "ssn": "1"}) == {
        "webhook_secret": REDACTED,
        "ssn": REDACTED,
    }
    only = Redactor(keys=["ssn"])
    body = {"webhook_secret": SECRET}
    assert only.redact(body) is body and not only.is_secret("verify_token")
    assert only.redact_text(f"webhook_secret: {SECRET}") == f"webhook_secret: {SECRET}"
    # Their words written apart count with keys added too.
    assert Redactor(extra=["ssn"]).redact_text(f"pass phrase: {SECRET}") == f"pass phrase: {REDACTED}"
    assert Redactor(keys=["house_code"]).redact_text(f"front house code: {SECRET}") == f"front house code: {REDACTED}"


_SEPARATORS = st.sampled_from(["_", "-", ".", "", " "])
_PREFIX = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@st.composite
def _named_for_a_secret(draw):
    """Any word or two, then a secret's last words, in the ways services spell keys."""
    words = [draw(_PREFIX) for _ in range(draw(st.integers(1, 2)))]
    words += draw(st.sampled_from(SECRET_KEY_ENDINGS)).split("_")
    sep = draw(_SEPARATORS.filter(lambda s: s != " "))
    style = draw(st.sampled_from(["lower", "upper", "title", "camel"]))
    if style == "camel":
        return words[0] + "".join(w.title() for w in words[1:])
    key = sep.join(words)
    return key.upper() if style == "upper" else key.title() if style == "title" else key


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_named_for_a_secret(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12))
def test_any_key_ending_in_a_secret_word_is_redacted_and_redacting_twice_changes_nothing(key, value):
    secret = "s3" + value
    body = {"data": {key: secret, "note": f"{key}={secret}; {key}: {secret}"}}
    once = R.redact(body)
    assert secret not in orjson.dumps(once).decode()
    assert once["data"][key] == REDACTED
    assert R.redact(once) == once


# --- private keys' PEM blocks ----------------------------------------------------------

_RSA = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1L\nMfX3kqYg==\n-----END RSA PRIVATE KEY-----"
_CERT = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----"


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"signing failed with {_RSA} (bad padding)", f"signing failed with {REDACTED} (bad padding)"),
        (f"private_key: {_RSA}\nnext: 1", f"private_key: {REDACTED}\nnext: 1"),
        # As JSON writes it inside a string: its line breaks escaped.
        (
            '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n"}',
            '{"type": "service_account", "private_key": "[REDACTED]"}',
        ),
        ("pem -----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n!", "pem [REDACTED]\\n!"),
        # Cut short (a message truncated): to the end of the text.
        ("key was -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", f"key was {REDACTED}"),
        (
            "a -----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY----- b "
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY----- c",
            f"a {REDACTED} b {REDACTED} c",
        ),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----\nsent", f"{REDACTED}\nsent"),
        # Glued to a bare value after a quoted key: one value, no "]" of the mask left behind.
        ('{"password": abc-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----}', '{"password": "[REDACTED]"}'),
        # Public: kept.
        (f"cert: {_CERT}", f"cert: {_CERT}"),
        ("-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----", None),
    ],
)
def test_a_private_keys_pem_block_is_redacted_wherever_it_stands(text, expected):
    redacted = R.redact_text(text)
    assert redacted == (text if expected is None else expected)
    assert R.redact_text(redacted) == redacted


def test_a_pem_block_under_any_key_is_redacted_and_a_key_id_kept():
    credential = {"type": "service_account", "private_key_id": "4f1a", "pem": _RSA, "client_email": "a@b.example"}
    assert R.redact({"data": credential}) == {"data": {**credential, "pem": REDACTED}}


# --- URLs that are credentials themselves -------------------------------------------------

_GOOGLE_KEY = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"


CREDENTIAL_URLS = [
        (
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/T00000000/B00000000/[REDACTED]",
        ),
        (
            "https://hooks.slack.com/triggers/T0123ABCD/4567/abcdef0123456789abcdef?x=1",
            "https://hooks.slack.com/triggers/T0123ABCD/4567/[REDACTED]?x=1",
        ),
        (
            "https://discord.com/api/webhooks/123456789012345678/abcDEF-ghi_jklmnop?wait=true",
            "https://discord.com/api/webhooks/123456789012345678/[REDACTED]?wait=true",
        ),
        (
            "https://discordapp.com/api/v10/webhooks/1234/abcdefghij.k/slack",
            "https://discordapp.com/api/v10/webhooks/1234/[REDACTED]/slack",
        ),
        (
            "https://acme.webhook.office.com/webhookb2/a1b2-c3@d4e5-f6/IncomingWebhook/0a1b2c3d/7f8e-9d",
            "https://acme.webhook.office.com/webhookb2/a1b2-c3@d4e5-f6/IncomingWebhook/[REDACTED]",
        ),
        (
            "https://outlook.office.com/webhook/a1b2@c3d4/IncomingWebhook/0a1b2c3d/7f8e",
            "https://outlook.office.com/webhook/a1b2@c3d4/IncomingWebhook/[REDACTED]",
        ),
        (
            "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
            "https://api.telegram.org/bot[REDACTED]/sendMessage",
        ),
        (
            "https://api.telegram.org/file/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/photos/1.jpg",
            "https://api.telegram.org/file/bot[REDACTED]/photos/1.jpg",
        ),
        (
            f"https://maps.googleapis.com/maps/api/geocode/json?address=Main+St&key={_GOOGLE_KEY}",
            "https://maps.googleapis.com/maps/api/geocode/json?address=Main+St&key=[REDACTED]",
        ),
        # Their sites' other pages, and another's /webhooks/ path: kept.
        ("https://hooks.slack.com/", None),
        ("https://hooks.slack.com/services/", None),
        ("https://discord.com/channels/123456/7890123", None),
        ("https://app.example.com/api/webhooks/123/abcdefghij", None),
        ("https://t.me/acme_bot", None),
        ("https://api.telegram.org/", None),
]


@pytest.mark.parametrize("url, expected", CREDENTIAL_URLS)
def test_the_secret_part_of_a_url_that_is_a_credential_is_redacted_wherever_it_stands(url, expected):
    expected = url if expected is None else expected
    assert R.redact_url(url) == expected
    assert R.redact_url(expected) == expected
    assert R.redact_text(f"POST {url} failed: 404") == f"POST {expected} failed: 404"
    assert R.redact_text(f"POST {expected} failed: 404") == f"POST {expected} failed: 404"
    assert R.redact({"request": {"url": url}}) == {"request": {"url": expected}}


@pytest.mark.parametrize("url, expected", CREDENTIAL_URLS)
@pytest.mark.parametrize("times", [1, 2])
def test_such_a_url_percent_encoded_inside_another_loses_its_secret_part_too(url, expected, times):
    # A click tracker's link to it, or a callback registered as another API's parameter.
    expected = url if expected is None else expected
    encoded, encoded_expected, mask = url, expected, REDACTED
    for _ in range(times):
        encoded, encoded_expected, mask = quote(encoded, safe=""), quote(encoded_expected, safe=""), quote(mask, safe="")
    encoded_expected = encoded_expected.replace(mask, REDACTED)
    tracked, tracked_expected = f"https://t.example/c?u={encoded}&id=7", f"https://t.example/c?u={encoded_expected}&id=7"
    assert R.redact_url(tracked) == tracked_expected
    assert R.redact_url(tracked_expected) == tracked_expected
    said = f"POST https://api.example.com/subscribe?callback={encoded} failed: 400"
    assert R.redact_text(said) == f"POST https://api.example.com/subscribe?callback={encoded_expected} failed: 400"
    if expected == url:
        assert R.redact_url(tracked) is tracked


def test_a_google_api_key_is_redacted_with_no_key_before_it():
    assert R.redact_text(f"geocoder said: key {_GOOGLE_KEY} is not valid") == f"geocoder said: key {REDACTED} is not valid"
    # One character short, or glued to more of a word: no such key.
    assert R.redact_text(f"ref {_GOOGLE_KEY[:-1]}") == f"ref {_GOOGLE_KEY[:-1]}"
    assert R.redact_text(f"ref x{_GOOGLE_KEY}") == f"ref x{_GOOGLE_KEY}"
    assert R.redact_text(f"ref {_GOOGLE_KEY}x") == f"ref {_GOOGLE_KEY}x"


def test_a_clicked_links_webhook_token_is_redacted_in_the_event():
    clicked = validate_event(
        ev("message.clicked", message_id="m1", url="https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3/abcdefghijklmnopqrstuvwx")
    )
    assert R.redact_event(clicked)["url"] == "https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3/[REDACTED]"


# --- through the log ---------------------------------------------------------------------


def _with_secrets(run_id="r1"):
    return triggered(
        run_id,
        data={
            "webhook_secret": SECRET,
            "request": {"headers": {"X-Postmark-Server-Token": SECRET, "Accept": "application/json"}},
            "service_account": {"private_key_id": "4f1a", "pem": _RSA},
        },
    )


def test_appended_events_keep_no_such_secret_and_an_older_releases_copy_is_a_duplicate_when_resent(log):
    ledger.append_input(log, jsonl([_with_secrets("r1")]))
    stored = log.run_events("r1")[0].body
    assert SECRET not in orjson.dumps(stored).decode() and "MIIEpAIBAAKCAQEAu1SU1L" not in orjson.dumps(stored).decode()
    assert stored["data"] == {
        "webhook_secret": REDACTED,
        "request": {"headers": {"X-Postmark-Server-Token": REDACTED, "Accept": "application/json"}},
        "service_account": {"private_key_id": "4f1a", "pem": REDACTED},
    }
    # Stored whole by a release that knew no such key (a redactor of no keys keeps all).
    older = _with_secrets("r2")
    ledger.append_input(log, jsonl([older]), IngestOptions(redactor=Redactor(keys=())))
    before = log.run_events("r2")[0].body
    assert before["data"]["webhook_secret"] == SECRET
    result, _ = ledger.append_input(log, jsonl([older]))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r2")[0].body == before


def test_scan_secrets_finds_what_an_older_release_stored_under_such_keys(log):
    stored_as_an_older_release_did(
        log,
        [
            _with_secrets("r1"),
            ev("run.failed", run_id="r1", error=f"signing failed with {_RSA}"),
            triggered("r2", data={"total_tokens": 12, "token_type": "bearer"}),
            triggered("r3", data={"notify": "https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3/abcdefghijklmnopqrstuvwx"}),
        ],
    )
    scan = ledger.scan_secrets(log, Redactor())
    assert (scan.events_read, scan.found) == (4, 3)
    places = {(f.type, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {
        ("run.triggered", "data.webhook_secret"): REDACTED,
        ("run.triggered", "data.request.headers.X-Postmark-Server-Token"): REDACTED,
        ("run.triggered", "data.service_account.pem"): REDACTED,
        ("run.failed", "error"): f"signing failed with {REDACTED}",
        ("run.triggered", "data.notify"): "https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3/[REDACTED]",
    }
    assert SECRET not in orjson.dumps(scan.to_dict()).decode()


def test_a_connection_strings_key_is_redacted_and_its_other_parts_kept():
    # Azure's, as a storage or Service Bus client's error quotes it.
    assert R.redact_text(
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=abc123==;EndpointSuffix=core"
    ) == f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={REDACTED};EndpointSuffix=core"
    assert R.redact_text("Endpoint=sb://acme/;SharedAccessKeyName=Root;SharedAccessKey=abc123=") == (
        f"Endpoint=sb://acme/;SharedAccessKeyName=Root;SharedAccessKey={REDACTED}"
    )
