"""Tokens known by their form, added after the channels' own: a Discord bot's token (its user
id's digits in base64, a dot, six characters, a dot and 27 to 38 more), the AI steps' other
keys (Hugging Face, Groq, Replicate, Perplexity, xAI), and a Telegram bot's token, a Twilio
pair and a Google refresh token percent-encoded inside a URL given as a parameter. Each is
redacted wherever it stands; lookalikes are kept byte for byte; an older release's copy
resent is a duplicate, and scan-secrets finds it."""

from __future__ import annotations

import base64
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import REDACTED, Redactor
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_redaction_pairs_and_channels import assert_redacted_by_form, assert_redacted_inside_an_encoded_url
from tests.test_secret_scan import stored_as_an_older_release_did

R = Redactor()

_ALNUM = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
_LETTERS = "AbCdEfGhIjKlMnOpQrStUvWxYz"
_HEX = "0123456789abcdef" * 2


def discord_token(user_id: str, middle: str = "Cl2FMQ", tail: str = "ZnCjm1XVW7vRze4b7Cq4se7kKWs") -> str:
    """A Discord bot token's shape: the user id in base64 (its padding dropped), a dot, six
    characters, a dot and the HMAC's 27 or (newer tokens) 38."""
    return base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=") + f".{middle}.{tail}"


DISCORD = discord_token("198622483471925248")  # Discord's own documented example's shape
DISCORD_NEW = discord_token("1234567890123456789", "GxYz12", "A" + (_ALNUM * 2)[:36] + "_")  # 19 digits, 38
HUGGING_FACE = "hf_" + (_LETTERS * 2)[:34]
GROQ = "gsk_" + (_ALNUM * 2)[:52]
REPLICATE = "r8_" + (_ALNUM * 2)[:37]
PERPLEXITY = "pplx-" + (_ALNUM * 2)[:48]
XAI = "xai-" + (_ALNUM * 3)[:80]
TOKENS = [DISCORD, DISCORD_NEW, HUGGING_FACE, GROQ, REPLICATE, PERPLEXITY, XAI]
# Of a fixed length: glued to more after it, none of them (the others' lengths vary).
FIXED_LENGTH = {HUGGING_FACE, GROQ, REPLICATE, PERPLEXITY, XAI}

TELEGRAM = "7012345678:AAH" + "b3Xk_Qz-9LmN0pRsTuVwXyZaBcDeFgHi"
TWILIO_SID, TWILIO_TOKEN = "AC" + _HEX, _HEX[::-1]
TWILIO_KEY_SID, TWILIO_KEY_SECRET = "SK" + _HEX.upper(), _ALNUM[1:33]
GOOGLE_REFRESH = "1//0gL" + (_ALNUM * 2)[:60]


def test_the_discord_example_has_the_documented_shape():
    # The documented example token, with its own HMAC part, so the form is pinned to it.
    assert DISCORD == "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"


@pytest.mark.parametrize("token", TOKENS)
def test_a_bots_or_ai_key_is_redacted_by_its_form_with_no_key_before_it(token):
    assert_redacted_by_form(token, token in FIXED_LENGTH)


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("times", [1, 2, 3])
def test_such_a_key_inside_a_url_encoded_in_another_is_redacted(token, times):
    assert_redacted_inside_an_encoded_url(token, times)


@pytest.mark.parametrize("digits", [15, 16, 17, 18, 19, 20])
@pytest.mark.parametrize("length", [27, 38])
def test_a_discord_token_of_a_user_id_of_any_length_is_redacted(digits, length):
    token = discord_token(("9" + "1234567890" * 2)[:digits], "aB-_9z", (_ALNUM * 2)[:length])
    assert R.redact_text(token) == REDACTED  # the shortest alone too (55 characters)
    assert R.redact_text(f"({token})") == f"({REDACTED})"
    assert R.redact_text(f"({token[1:]})") == f"({token[1:]})"  # its id's base64 cut: none


@pytest.mark.parametrize(
    "lookalike",
    [
        "MyServiceNameProduction1.eu-wes." + "a" * 27,  # a host name of the token's shape
        discord_token("1986224834719252:8"),  # an id with one character no digit
        discord_token("1986224834719252a8"),
        discord_token("19862248347192524-"),
        discord_token("198622483471925248".replace("1", "A", 1)),
    ],
)
def test_a_lookalike_beside_a_discord_token_is_kept(lookalike):
    # The token makes the text worth a search; the lookalike beside it is still no token.
    text = f"{DISCORD} via {lookalike}"
    assert R.redact_text(text) == f"{REDACTED} via {lookalike}"


_SNOWFLAKE = st.integers(min_value=10**14, max_value=10**20 - 1).map(str)
_PART = st.text(alphabet=_ALNUM + "_-", min_size=1, max_size=1)


@settings(max_examples=200, deadline=None)
@given(_SNOWFLAKE, st.lists(_PART, min_size=6, max_size=6).map("".join), st.sampled_from([27, 38]), st.data())
def test_any_users_discord_token_is_redacted(user_id, middle, length, data):
    tail = data.draw(st.lists(_PART, min_size=length, max_size=length).map("".join))
    token = discord_token(user_id, middle, tail)
    text = f"bot login failed ({token}): retrying"
    assert R.redact_text(text) == f"bot login failed ({REDACTED}): retrying"


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=_LETTERS + "-", min_size=16, max_size=19).filter(lambda w: not w.isdigit()),
    st.lists(_PART, min_size=6, max_size=6).map("".join),
    st.lists(_PART, min_size=27, max_size=27).map("".join),
)
def test_the_same_shape_from_no_user_id_is_kept(word, middle, tail):
    # A hostname or a word of the token's shape: its first part is no digits' base64.
    lookalike = base64.urlsafe_b64encode(word.encode()).decode().rstrip("=") + f".{middle}.{tail}"
    assert R.redact_text(f"resolving {lookalike}") == f"resolving {lookalike}"


@pytest.mark.parametrize(
    "text",
    [
        "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FM.ZnCjm1XVW7vRze4b7Cq4se7kKWs",  # five in the middle
        "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKW",  # 26 after it
        "MTk4NjIyNDgzNDcx.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",  # an id of twelve digits
        "MyServiceName-production01.us-eas.internal-loadbalancer-1234567",
        "hf_" + (_LETTERS * 2)[:33], "hf_" + (_LETTERS * 2)[:33] + "1", "gsk_" + (_ALNUM * 2)[:51],
        "r8_" + (_ALNUM * 2)[:36], "pplx-" + (_ALNUM * 2)[:47], "xai-" + (_ALNUM * 3)[:79],
        "self.hf_model", "gsk_test", "r8_v2", "pplx-api", "xai-grok-2",
        "u=https%3A%2F%2Fx.io%2F%3Fat%3D10%3AApple", "1234%3AA" + "b" * 34, "12345%3AA" + "b" * 33,
        f"{TWILIO_SID}%3A{TWILIO_TOKEN[:-1]}", f"AC{_HEX[:-1]}%3A{TWILIO_TOKEN}", f"SKU%3A{_HEX}",
        "1%2F%2F0abc", "https%3A%2F%2Fx.io%2F1%2F%2F0" + "a" * 39,
    ],
)
def test_a_lookalike_of_such_a_key_is_kept(text):
    assert R.redact_text(text) is text
    assert R.redact_url(f"https://t.example/c?u={text}") == f"https://t.example/c?u={text}"


# --- the channels' tokens percent-encoded inside a URL ----------------------------------


@pytest.mark.parametrize("times", [1, 2, 3])
@pytest.mark.parametrize("lower", [False, True])
def test_a_telegram_token_encoded_in_a_url_given_as_a_parameter_is_redacted(times, lower):
    encoded = f"https://app.example.com/cb?bot={TELEGRAM}&chat=42"
    for _ in range(times):
        encoded = quote(encoded, safe="")
    if lower:  # some encoders write the escapes' hex digits in lower case
        encoded = encoded.replace("%3A", "%3a").replace("%253A", "%253a").replace("%25253A", "%25253a")
    tracked = f"https://t.example/ls/click?u={encoded}&id=7"
    redacted = R.redact_url(tracked)
    digits = TELEGRAM.split(":")[0]
    assert "AAHb3Xk" not in redacted and REDACTED in redacted, redacted
    assert digits not in redacted  # the whole token goes, as where its colon is not encoded
    assert R.redact_text(redacted) == redacted
    assert R.redact_text(encoded).count(REDACTED) == 1


@pytest.mark.parametrize("sid, secret", [(TWILIO_SID, TWILIO_TOKEN), (TWILIO_KEY_SID, TWILIO_KEY_SECRET)])
@pytest.mark.parametrize("times", [1, 2, 3])
@pytest.mark.parametrize("lower", [False, True])
def test_a_twilio_pair_encoded_in_a_url_loses_the_token_and_keeps_the_sid(sid, secret, times, lower):
    encoded = f"https://app.example.com/cb?auth={sid}:{secret}"
    for _ in range(times):
        encoded = quote(encoded, safe="")
    if lower:
        encoded = encoded.replace("3A", "3a")
    text = f"callback {encoded} failed"
    redacted = R.redact_text(text)
    assert secret not in redacted and sid in redacted, redacted
    assert redacted.replace(REDACTED, secret) == text
    assert R.redact_text(redacted) == redacted


@pytest.mark.parametrize("times", [1, 2, 3])
@pytest.mark.parametrize("lower", [False, True])
def test_a_google_refresh_token_encoded_in_a_url_is_redacted(times, lower):
    encoded = f"https://app.example.com/oauth/done?r={GOOGLE_REFRESH}"
    for _ in range(times):
        encoded = quote(encoded, safe="")
    if lower:
        encoded = encoded.replace("2F", "2f")
    tracked = f"https://t.example/c?u={encoded}&id=7"
    redacted = R.redact_url(tracked)
    assert "gL" + _ALNUM[:10] not in redacted and redacted.endswith(f"{REDACTED}&id=7"), redacted
    assert R.redact_url(redacted) == redacted


# --- through the log ---------------------------------------------------------------------


def test_appended_events_keep_no_such_key_and_an_older_releases_copy_is_a_duplicate_when_resent(log):
    events = [
        triggered("r1", data={"bot": DISCORD, "model": f"hf {HUGGING_FACE}"}),
        ev("run.failed", run_id="r1", error=f"groq refused {GROQ}; xai refused {XAI}"),
    ]
    ledger.append_input(log, jsonl(events))
    stored = [e.body for e in log.run_events("r1")]
    text = orjson.dumps(stored).decode()
    assert not any(token in text for token in TOKENS)
    assert stored[0]["data"] == {"bot": REDACTED, "model": f"hf {REDACTED}"}
    assert stored[1]["error"] == f"groq refused {REDACTED}; xai refused {REDACTED}"
    # Stored whole by a release that knew no such form, then sent again: a duplicate.
    older = triggered("r2", data={"bot": DISCORD_NEW, "ai": PERPLEXITY})
    stored_as_an_older_release_did(log, [older])
    before = log.run_events("r2")[0].body
    assert before["data"] == {"bot": DISCORD_NEW, "ai": PERPLEXITY}
    result, _ = ledger.append_input(log, jsonl([older]))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r2")[0].body == before


def test_scan_secrets_finds_such_keys_an_older_release_stored(log):
    stored_as_an_older_release_did(
        log,
        [
            triggered("r1", data={"bot": DISCORD}),
            ev("run.failed", run_id="r1", error=f"replicate said 401 for {REPLICATE}"),
            triggered("r2", data={"host": "MyServiceName-production01.us-eas.internal-loadbalancer-1234567"}),
        ],
    )
    scan = ledger.scan_secrets(log, Redactor())
    assert (scan.events_read, scan.found) == (3, 2)
    places = {(f.type, f.run_id, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {
        ("run.triggered", "r1", "data.bot"): REDACTED,
        ("run.failed", "r1", "error"): f"replicate said 401 for {REDACTED}",
    }
