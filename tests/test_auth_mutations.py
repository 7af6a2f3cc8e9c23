"""A mutation review of authentication: API keys, web sessions and provider webhook
signatures. Each test pins a rule that a hand-made change to the code broke unnoticed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.providers import ADAPTERS, base, mailgun, postmark, sendgrid, twilio, whatsapp
from flowledger.providers.base import MAX_SIGNATURE_AGE, SignatureInvalid, SignedRequest
from flowledger.store import open_log
from flowledger.web import pages

NOW = 1_800_000_000.0


@pytest.fixture
def made(store_path):
    """A store with a read and an admin key: (store_path, {scope: (key, secret)})."""
    log = open_log(store_path)
    try:
        with open("examples/welcome-series.jsonl", "rb") as f:
            ledger.append_input(log, f)
        return store_path, {scope: keys.create_key(log.backend, scope, scope) for scope in ("read", "admin")}
    finally:
        log.close()


@pytest.fixture
def client(made):
    store_path, _ = made
    with TestClient(create_app(store_path)) as client:
        yield client


def sign_in(client, secret, **headers):
    return client.post("/login", data={"api_key": secret, "next": "/"}, headers=headers, follow_redirects=False)


def signed_in(client) -> bool:
    return client.get("/runs", follow_redirects=False).status_code == 200


# API keys.


def test_a_key_differing_only_in_its_last_character_is_unknown(made, client):
    """The whole key is what is checked, not some prefix of it: one character off is a 401."""
    _, made_keys = made
    secret = made_keys["read"][1]
    other = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert client.get("/v1/runs", headers={"X-API-Key": secret}).status_code == 200
    assert client.get("/v1/runs", headers={"X-API-Key": other}).status_code == 401
    assert client.get("/v1/runs", headers={"X-API-Key": secret[:24]}).status_code == 401


def test_a_key_holds_32_random_bytes_after_its_prefix(log):
    """Keys are long random strings (the README's reason a plain SHA-256 of one is enough)."""
    made = {keys.create_key(log.backend, "k", "read")[1] for _ in range(3)}
    assert len(made) == 3
    for secret in made:
        assert secret.startswith(keys.PREFIX) and len(secret) - len(keys.PREFIX) >= 43


def test_a_key_is_stored_as_its_sha256_never_itself(log):
    """The stored hash is the key's SHA-256, and looking a key up finds it by that alone."""
    key, secret = keys.create_key(log.backend, "k", "admin")
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT hash FROM api_keys WHERE id = ?", (key.id,))
        (stored,) = c.fetchone()
    assert stored == hashlib.sha256(secret.encode()).hexdigest() and secret not in stored
    assert keys.verify(log.backend, secret) == key


def test_revoking_a_key_again_keeps_when_it_was_first_revoked(log):
    """A second revoke changes nothing: the key's revocation time stays the first one."""
    key, _ = keys.create_key(log.backend, "k", "read")
    first = keys.revoke_key(log.backend, key.id).revoked_at
    time.sleep(0.01)
    assert keys.revoke_key(log.backend, key.id).revoked_at == first


def test_a_revoked_key_allows_nothing(log):
    """ApiKey.allows is false for a revoked key, whatever its scope."""
    key, _ = keys.create_key(log.backend, "k", "admin")
    revoked = keys.revoke_key(log.backend, key.id)
    assert key.allows("admin") and not any(revoked.allows(scope) for scope in keys.SCOPES)


# Web sessions.


def test_a_session_lasts_twelve_hours_as_the_readme_says():
    """The README says a session ends 12 hours after signing in."""
    assert keys.SESSION_LIFETIME == 12 * 3600


def test_a_session_started_for_a_key_revoked_meanwhile_is_refused(log):
    """A sign-in that raced a revoke (its key checked before, its session made after) gets no live session."""
    key, _ = keys.create_key(log.backend, "k", "admin")
    keys.revoke_key(log.backend, key.id)
    token = keys.start_session(log.backend, key, now=NOW)
    assert keys.session_key(log.backend, token, now=NOW) is None


def test_session_tokens_are_random_and_never_name_the_key(log):
    """Two sign-ins with one key get different tokens, neither holding the key or its id."""
    key, secret = keys.create_key(log.backend, "k", "read")
    first, second = keys.start_session(log.backend, key, now=NOW), keys.start_session(log.backend, key, now=NOW)
    assert first != second
    for token in (first, second):
        assert key.id not in token and secret not in token
        assert len(token) - len(keys.SESSION_PREFIX) >= 43
    # A made-up token of the right form is no session.
    assert keys.session_key(log.backend, keys.SESSION_PREFIX + key.id, now=NOW) is None


def test_a_revoked_key_cannot_sign_in(made, client):
    """Signing in with a revoked key is a 401 and sets no cookie."""
    store_path, made_keys = made
    key, secret = made_keys["read"]
    log = open_log(store_path)
    try:
        keys.revoke_key(log.backend, key.id)
    finally:
        log.close()
    r = sign_in(client, secret)
    assert r.status_code == 401 and "set-cookie" not in r.headers


def test_sign_in_from_a_sibling_site_is_refused(made, client):
    """Sec-Fetch-Site: same-site (another host of the same site) is not this site: a 403."""
    _, made_keys = made
    r = sign_in(client, made_keys["read"][1], **{"Sec-Fetch-Site": "same-site"})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_signing_out_needs_the_sessions_csrf_token(made, client):
    """A sign-out posted without the CSRF token (from another site, say) leaves the session on."""
    _, made_keys = made
    sign_in(client, made_keys["admin"][1])
    r = client.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert signed_in(client)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/runs/run-0054").text).group(1)
    client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert not signed_in(client)


def test_a_truncated_csrf_token_is_refused(made, client):
    """Only the whole CSRF token passes, not a prefix of it."""
    _, made_keys = made
    sign_in(client, made_keys["admin"][1])
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/runs/run-0054").text).group(1)
    for given in (csrf[:8], ""):
        r = client.post("/runs/run-0054/retry", data={"csrf": given}, follow_redirects=False)
        assert r.status_code == 403


def test_csrf_and_signature_comparisons_are_constant_time(monkeypatch):
    """CSRF tokens and provider signatures are compared with hmac.compare_digest."""
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert pages.csrf_matches(pages.csrf_token("fl_sess_x"), "fl_sess_x")
    assert not base.same("abc", "abd")
    assert len(calls) == 2


# Webhook signatures: the timestamp window.


@pytest.mark.parametrize("offset, fresh", [(-MAX_SIGNATURE_AGE, True), (MAX_SIGNATURE_AGE, True), (-MAX_SIGNATURE_AGE + 1, True), (-MAX_SIGNATURE_AGE - 1, False), (MAX_SIGNATURE_AGE + 1, False)])
def test_a_signed_timestamp_is_good_for_five_minutes_either_way(offset, fresh):
    """A timestamp up to 5 minutes away passes (exactly 5 too: not "over"); a second more, past or future, is refused."""
    assert MAX_SIGNATURE_AGE == 300
    if fresh:
        base.fresh(str(NOW + offset), NOW, "test")
    else:
        with pytest.raises(SignatureInvalid, match="away from now"):
            base.fresh(str(NOW + offset), NOW, "test")


@pytest.mark.parametrize(
    "provider, secrets",
    [
        ("mailgun", {"signing_key": ""}),
        ("twilio", {"auth_token": ""}),
        ("whatsapp", {"app_secret": ""}),
        ("postmark", {"username": "", "password": ""}),
    ],
)
def test_an_empty_secret_is_no_secret(provider, secrets):
    """A secret configured empty refuses every webhook (anyone can sign with an empty key)."""
    body = b"{}"
    headers = {
        "x-hub-signature-256": "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest(),
        "x-twilio-signature": twilio_signed("https://x.test/hook", {}, ""),
        "authorization": "Basic " + base64.b64encode(b":").decode(),
    }
    if provider == "mailgun":
        token = "t" * 50
        body = orjson.dumps({"signature": {"timestamp": str(int(NOW)), "token": token, "signature": hmac.new(b"", (str(int(NOW)) + token).encode(), hashlib.sha256).hexdigest()}})
    with pytest.raises(SignatureInvalid, match="no .* is configured"):
        ADAPTERS[provider].verify(SignedRequest(body, headers, url="https://x.test/hook"), secrets, NOW)


# Mailgun.


def mailgun_signed(key: str, token: str, timestamp: float, events: dict | None = None) -> bytes:
    stamp = str(int(timestamp))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return orjson.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": events or {}})


def test_a_mailgun_signature_wrong_only_in_its_last_digit_is_refused():
    """The whole HMAC is compared: a signature off in its last hex digit is refused."""
    body = orjson.loads(mailgun_signed("mg-key", "a" * 50, NOW))
    last = body["signature"]["signature"][-1]
    body["signature"]["signature"] = body["signature"]["signature"][:-1] + ("0" if last != "0" else "1")
    with pytest.raises(SignatureInvalid, match="does not match"):
        mailgun.verify(SignedRequest(orjson.dumps(body), {}), {"signing_key": "mg-key"}, NOW)


def mailgun_facts(body: bytes, now: float, tokens: base.TokenMemory) -> list[base.ProviderFact]:
    return mailgun.ADAPTER.facts(SignedRequest(body, {}), {"signing_key": "mg-key"}, now, tokens)


def mailgun_event(event_id: str) -> dict:
    return {"event": "delivered", "id": event_id, "timestamp": NOW, "message": {"headers": {"message-id": "m@x"}}}


def test_a_mailgun_token_is_remembered_while_its_timestamp_could_be_fresh():
    """A token seen 4 minutes ago still cannot vouch for another body (its timestamp is still
    fresh); past the time tokens are kept, its timestamp is stale anyway."""
    tokens = base.ProcessTokens()  # a memory for this test alone
    token = "r" * 49 + "4"
    signed_at = NOW - 60
    first = mailgun_signed("mg-key", token, signed_at, mailgun_event("a"))
    assert [f.dedupe_id for f in mailgun_facts(first, signed_at, tokens)] == ["a"]
    other = mailgun_signed("mg-key", token, signed_at, mailgun_event("b"))
    with pytest.raises(SignatureInvalid, match="another body"):
        mailgun_facts(other, signed_at + 240, tokens)
    assert [f.dedupe_id for f in mailgun_facts(first, signed_at + 240, tokens)] == ["a"]  # a resend
    # Signed again as late as it is kept (a timestamp can be that far from the first's).
    kept_until = signed_at + base.TOKENS_KEPT
    with pytest.raises(SignatureInvalid, match="another body"):
        mailgun_facts(mailgun_signed("mg-key", token, kept_until, mailgun_event("b")), kept_until, tokens)
    # Forgotten once kept for TOKENS_KEPT (twice the signature's age): then the same token
    # signed afresh is a new request's (Mailgun's tokens are random: never reused).
    later = signed_at + base.TOKENS_KEPT + 1
    again = mailgun_signed("mg-key", token, later, mailgun_event("b"))
    assert [f.dedupe_id for f in mailgun_facts(again, later, tokens)] == ["b"]
    assert list(tokens.seen) == ["mailgun:" + token]


def test_mailgun_tokens_are_remembered_in_the_memory_given_else_in_this_processs():
    """A memory that cannot remember (None) leaves it to this process's memory, which then refuses."""

    class Forgetful:
        def first_body(self, key, digest, now, kept):
            return None

    token = "f" * 49 + "0"
    first = mailgun_signed("mg-key", token, NOW, mailgun_event("a"))
    assert len(mailgun_facts(first, NOW, Forgetful())) == 1
    assert base.PROCESS_TOKENS.seen["mailgun:" + token][1] == hashlib.sha256(first).digest()
    with pytest.raises(SignatureInvalid, match="another body"):
        mailgun_facts(mailgun_signed("mg-key", token, NOW, mailgun_event("b")), NOW, Forgetful())
    # A memory that remembers answers alone: this process's is not asked.
    given = base.ProcessTokens()
    other = "g" * 49 + "0"
    assert len(mailgun_facts(mailgun_signed("mg-key", other, NOW, mailgun_event("a")), NOW, given)) == 1
    assert "mailgun:" + other in given.seen and "mailgun:" + other not in base.PROCESS_TOKENS.seen


# Postmark.


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_postmark_needs_both_the_user_and_the_password():
    """Right password with a wrong user, or right user with a wrong or longer password, is refused."""
    secrets = {"username": "pm", "password": "pw"}
    for headers in (basic("other", "pw"), basic("pm", "nope"), basic("pm", "pwX"), basic("pmX", "pw")):
        with pytest.raises(SignatureInvalid, match="wrong credentials"):
            postmark.verify(SignedRequest(b"{}", headers), secrets, NOW)
    postmark.verify(SignedRequest(b"{}", basic("pm", "pw")), secrets, NOW)


def test_postmark_takes_a_lowercase_scheme_and_a_password_with_a_colon():
    """The basic scheme is case-insensitive, and a password may hold ':' (only the first splits)."""
    secrets = {"username": "pm", "password": "p:w"}
    header = basic("pm", "p:w")["authorization"].replace("Basic", "basic")
    postmark.verify(SignedRequest(b"{}", {"authorization": header}), secrets, NOW)


# Twilio.


def twilio_signed(url: str, fields: dict[str, str], token: str) -> str:
    """X-Twilio-Signature as Twilio documents it (made here, not with the adapter's own code)."""
    payload = url + "".join(name + fields[name] for name in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def test_twilio_signs_the_fields_sorted_by_name_whatever_their_order_in_the_body():
    """A callback whose fields come unsorted (as Twilio sends them) checks against the signature over the sorted fields."""
    url = "https://flows.example/v1/webhooks/twilio"
    fields = {"To": "+15550001", "MessageStatus": "delivered", "MessageSid": "SM7", "AccountSid": "AC1"}
    body = urlencode(fields).encode()
    request = SignedRequest(body, {"x-twilio-signature": twilio_signed(url, fields, "tok")}, url=url, form=fields)
    assert twilio.ADAPTER.facts(request, {"auth_token": "tok"}, NOW)[0].provider_message_id == "SM7"
    unsorted_form = SignedRequest(body, request.headers, url=url, form={})
    assert twilio.ADAPTER.facts(unsorted_form, {"auth_token": "tok"}, NOW)[0].provider_message_id == "SM7"


def test_twilio_signature_covers_the_query_of_the_url():
    """The callback URL's query (the flowledger message id) is signed: another query is refused."""
    token, url = "tok", "https://flows.example/v1/webhooks/twilio?flowledger_message_id=m-1"
    fields = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    signed = twilio_signed(url, fields, token)
    for forged_url in ("https://flows.example/v1/webhooks/twilio?flowledger_message_id=m-2", "https://flows.example/v1/webhooks/twilio"):
        with pytest.raises(SignatureInvalid):
            twilio.verify(SignedRequest(b"", {"x-twilio-signature": signed}, url=forged_url, form=fields), {"auth_token": token}, NOW)
    # And the one signed with no query does not vouch for a request with one.
    bare = twilio_signed("https://flows.example/v1/webhooks/twilio", fields, token)
    with pytest.raises(SignatureInvalid):
        twilio.verify(SignedRequest(b"", {"x-twilio-signature": bare}, url=url, form=fields), {"auth_token": token}, NOW)


def test_twilio_signature_covers_the_query_behind_a_public_url(store_path):
    """With --public-url, the signed URL keeps the request's query (Twilio signs the URL it called)."""
    secrets = {"twilio": {"auth_token": "tw-token"}}
    with TestClient(create_app(store_path, provider_secrets=secrets, public_url="https://flows.example")) as client:
        form = {"MessageSid": "SM9", "MessageStatus": "delivered", "To": "+15550001"}
        path = "/v1/webhooks/twilio?flowledger_message_id=m-9"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        good = twilio_signed("https://flows.example" + path, form, "tw-token")
        assert client.post(path, content=urlencode(form), headers={**headers, "X-Twilio-Signature": good}).status_code == 200
        bare = twilio_signed("https://flows.example/v1/webhooks/twilio", form, "tw-token")
        r = client.post("/v1/webhooks/twilio?flowledger_message_id=m-10", content=urlencode(form), headers={**headers, "X-Twilio-Signature": bare})
        assert r.status_code == 401


# WhatsApp.


def test_a_whatsapp_webhook_without_a_signature_is_refused(store_path):
    """No X-Hub-Signature-256 header is a 401 and stores nothing."""
    body = orjson.dumps({"entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.1", "status": "read", "timestamp": str(int(NOW)), "recipient_id": "1"}]}}]}]})
    with pytest.raises(SignatureInvalid):
        whatsapp.verify(SignedRequest(body, {}), {"app_secret": "meta"}, NOW)
    with TestClient(create_app(store_path, provider_secrets={"whatsapp": {"app_secret": "meta"}})) as client:
        assert client.post("/v1/webhooks/whatsapp", content=body, headers={"Content-Type": "application/json"}).status_code == 401
    log = open_log(store_path)
    try:
        assert ledger.unmatched(log, 10) == []
    finally:
        log.close()


def test_the_whatsapp_handshake_needs_mode_subscribe():
    """The right verify token with a mode other than subscribe echoes nothing."""
    params = {"hub.mode": "unsubscribe", "hub.verify_token": "vt", "hub.challenge": "42"}
    with pytest.raises(SignatureInvalid):
        whatsapp.handshake(params, {"verify_token": "vt"})


# Missing headers.


def test_a_webhook_missing_its_signature_headers_is_refused():
    """SendGrid without its timestamp, Twilio without its signature, Postmark without basic auth: refused."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = b"[]"
    signature = base64.b64encode(private.sign(str(int(NOW)).encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    with pytest.raises(SignatureInvalid, match="required"):
        sendgrid.verify(SignedRequest(body, {sendgrid.SIGNATURE: signature}), {"public_key": base64.b64encode(public).decode()}, NOW)
    with pytest.raises(SignatureInvalid, match="required"):
        twilio.verify(SignedRequest(b"MessageSid=SM1&MessageStatus=sent", {}, url="https://x.test/"), {"auth_token": "t"}, NOW)
    with pytest.raises(SignatureInvalid, match="required"):
        postmark.verify(SignedRequest(b"{}", {}), {"username": "u", "password": "p"}, NOW)


# SendGrid's configured key.


def _public_der(curve) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.generate_private_key(curve).public_key()
    return base64.b64encode(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def test_a_sendgrid_key_with_a_stray_character_is_malformed_not_read_around_it():
    """A configured key with a character that is no base64 is refused as malformed, not decoded leniently."""
    from cryptography.hazmat.primitives.asymmetric import ec

    good = _public_der(ec.SECP256R1())
    sendgrid.public_key(good)
    with pytest.raises(SignatureInvalid, match="malformed"):
        sendgrid.public_key(good[:20] + "!" + good[20:])


def test_a_sendgrid_key_on_another_curve_is_malformed():
    """Only an ECDSA P-256 key is taken (SendGrid's); a P-384 one is refused as malformed."""
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(SignatureInvalid, match="P-256"):
        sendgrid.public_key(_public_der(ec.SECP384R1()))


def test_a_mailgun_token_with_a_bad_signature_is_not_remembered():
    """Only tokens whose signature verified are remembered (unsigned requests cannot fill the memory)."""
    tokens = base.ProcessTokens()
    body = orjson.loads(mailgun_signed("mg-key", "u" * 50, NOW, mailgun_event("a")))
    body["signature"]["signature"] = "0" * 64
    with pytest.raises(SignatureInvalid, match="does not match"):
        mailgun_facts(orjson.dumps(body), NOW, tokens)
    assert tokens.seen == {} and "mailgun:" + "u" * 50 not in base.PROCESS_TOKENS.seen


def test_signing_in_clears_away_sessions_that_are_over(log):
    """Sessions past their lifetime are deleted at the next sign-in: the table holds only live ones."""
    key, _ = keys.create_key(log.backend, "k", "read")
    keys.start_session(log.backend, key, now=NOW)
    live = keys.start_session(log.backend, key, now=NOW + keys.SESSION_LIFETIME + 1)
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT COUNT(*) FROM web_sessions")
        assert c.fetchone()[0] == 1
    assert keys.session_key(log.backend, live, now=NOW + keys.SESSION_LIFETIME + 1) == key
