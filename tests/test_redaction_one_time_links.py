"""One-time links' tokens in their paths: a password reset's, a magic sign-in's, an address
confirmation's, an invitation's. A click on such a link is its message's click event, url
and all, so its token is redacted as a query's ``?token=`` is: in a URL, in text, inside an
object and inside another URL; the site's own pages (short or wordy segments) are kept byte
for byte; keys given instead of the default ones keep them; an older release's copy resent
is a duplicate, and scan-secrets finds it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import REDACTED, Redactor
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_redaction_signed_media import assert_redacted_wherever_it_stands
from tests.test_secret_scan import stored_as_an_older_release_did

R = Redactor()

_HEX64 = "4f1d0e9a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5d6e7f8091a2b3c4d5e"
LARAVEL = f"https://app.example.com/reset-password/{_HEX64}?email=ana%40example.com"
LARAVEL_REDACTED = f"https://app.example.com/reset-password/{REDACTED}?email=ana%40example.com"
DJANGO = "https://app.example.com/accounts/reset/MTIz/c3y4b5-8d4f2e0a1b2c3d4e5f60718293a4b5c6/"
DJANGO_REDACTED = f"https://app.example.com/accounts/reset/MTIz/{REDACTED}/"
_SIGNED_ID = "eyJfcmFpbHMiOnsiZGF0YSI6MSwicHVyIjoicGFzc3dvcmRfcmVzZXQifX0=--a1b2c3d4e5f6a7b8c9d0e1f2"
RAILS = f"https://app.example.com/passwords/{_SIGNED_ID}/edit"
RAILS_REDACTED = f"https://app.example.com/passwords/{REDACTED}/edit"
INVITE = "https://app.example.com/invitations/550e8400-e29b-41d4-a716-446655440000/accept"
INVITE_REDACTED = f"https://app.example.com/invitations/{REDACTED}/accept"

LINKS = [
    (LARAVEL, LARAVEL_REDACTED),
    (DJANGO, DJANGO_REDACTED),
    (RAILS, RAILS_REDACTED),
    (INVITE, INVITE_REDACTED),
    # Magic sign-in links, address confirmations, an account's unlock, in any case and spelling.
    ("https://app.example.com/magic-link/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/magic-link/{REDACTED}"),
    ("https://app.example.com/auth/magic_login/Zx81kq0Pmn3Lw92Bb7Rt#top", f"https://app.example.com/auth/magic_login/{REDACTED}#top"),
    ("https://app.example.com/login/Zx81kq0Pmn3Lw92Bb7Rt?next=%2F", f"https://app.example.com/login/{REDACTED}?next=%2F"),
    ("https://app.example.com/sign-in/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/sign-in/{REDACTED}"),
    ("https://app.example.com/verify-email/42/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/verify-email/42/{REDACTED}"),
    ("https://app.example.com/confirmation/Zx81kq0Pmn3Lw92Bb7Rt.", f"https://app.example.com/confirmation/{REDACTED}."),
    ("https://app.example.com/users/activate/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/users/activate/{REDACTED}"),
    ("https://app.example.com/unlock/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/unlock/{REDACTED}"),
    ("https://app.example.com/Account/ResetPassword/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/Account/ResetPassword/{REDACTED}"),
    ("https://app.example.com/password/reset/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/password/reset/{REDACTED}"),
    ("https://app.example.com/forgot-password/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/forgot-password/{REDACTED}"),
    ("https://app.example.com/tokens/Zx81kq0Pmn3Lw92Bb7Rt", f"https://app.example.com/tokens/{REDACTED}"),
    # Drupal's one-time sign-in: a user id and a time (two segments of digits) before the hash.
    (
        "https://www.example.org/user/reset/42/1764892800/mK3x-9QpZ1vR7bT2nW5yL8cH4dF6gJ0aE3sU9oI2kXw/login",
        f"https://www.example.org/user/reset/42/1764892800/{REDACTED}/login",
    ),
    # Base64's padding, percent-encoded in the path.
    ("https://app.example.com/reset/Zx81kq0Pmn3Lw92B%3D%3D", f"https://app.example.com/reset/{REDACTED}"),
]


@pytest.mark.parametrize("url, expected", LINKS)
def test_a_one_time_links_token_is_redacted_wherever_the_link_stands(url, expected):
    assert_redacted_wherever_it_stands(url, expected)
    # A sentence going on after the link, and a link's markup.
    assert R.redact_text(f"clicked {url} twice") == f"clicked {expected} twice"
    assert R.redact_text(f'<a href="{url}">Reset</a>') == f'<a href="{expected}">Reset</a>'


@pytest.mark.parametrize("url, expected", [LINKS[0], LINKS[2], LINKS[4]])
@pytest.mark.parametrize("times", [1, 2, 3])
def test_such_a_token_inside_a_url_encoded_in_another_is_redacted(url, expected, times):
    # A click tracker's link to the reset page, its URL percent-encoded once or more: the
    # token goes, the rest is kept byte for byte.
    encoded = url
    for _ in range(times):
        encoded = quote(encoded, safe="")
    tracked = f"https://t.example/ls/click?u={encoded}&id=7"
    redacted = R.redact_url(tracked)
    token = expected_token(url, expected)
    encoded_token = token
    for _ in range(times):
        encoded_token = quote(encoded_token, safe="")
    assert redacted == tracked.replace(encoded_token, REDACTED), redacted
    assert R.redact_url(redacted) == redacted


def expected_token(url: str, expected: str) -> str:
    """The part of ``url`` that ``expected`` masks."""
    start = expected.index(REDACTED)
    return url[start : len(url) - (len(expected) - start - len(REDACTED))]


@pytest.mark.parametrize(
    "text",
    [
        # The site's own pages: a segment too short, with no digit, or with no letter.
        "https://app.example.com/reset-password/new",
        "https://app.example.com/password/reset/expired",
        "https://app.example.com/confirm/email-sent-successfully",
        "https://app.example.com/invitations/12345678901234567890",
        "https://app.example.com/login/Zx81kq0Pmn3Lw92",  # 15 characters
        "https://app.example.com/reset/MQ/abc",
        # A long segment after another word, or a purpose word not a whole segment.
        "https://blog.example.com/2024/how-to-reset-your-password-in-10-steps",
        "https://app.example.com/files/Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/resetting/Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/xlogin/Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset-Zx81kq0Pmn3Lw92Bb7Rt",
        # Two segments between (past the one short one allowed), unless both are digits alone;
        # three of digits.
        "https://app.example.com/reset/ab/cd/Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset/12/cd/Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset/ab/12/Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset/1/2/3/Zx81kq0Pmn3Lw92Bb7Rt",
        # Not a path: no slash before the purpose.
        "reset/Zx81kq0Pmn3Lw92Bb7Rt",
        "password reset Zx81kq0Pmn3Lw92Bb7Rt",
    ],
)
def test_a_lookalike_is_kept_byte_for_byte(text):
    assert_kept_beside(text, LARAVEL, LARAVEL_REDACTED)


def assert_kept_beside(text: str, url: str, expected: str) -> None:
    """``text`` is kept byte for byte, alone and beside a real link (``url``, redacted as
    ``expected``: so that no hint stands in for the form)."""
    assert R.redact_text(text) is text
    assert R.redact_url(text) is text
    assert R.redact_text(f"{url} {text}") == f"{expected} {text}"


def _readme_purposes() -> list[str]:
    """The purposes README's Secrets lists for one-time links."""
    text = " ".join(Path(__file__).resolve().parent.parent.joinpath("README.md").read_text().split())
    listed = text.split("The purposes, in any case, singular or plural, their words joined by `-`, `_` or nothing: ", 1)[1]
    return listed.split(".", 1)[0].split(", ")


def test_every_purpose_readme_lists_is_one_in_any_case_number_and_joining():
    purposes = _readme_purposes()
    assert len(purposes) == 23 and "reset" in purposes and "unlock" in purposes
    token = "Zx81kq0Pmn3Lw92Bb7Rt"
    for purpose in purposes:
        for joined in (purpose, purpose.replace("-", "_"), purpose.replace("-", "")):
            for written in (joined, joined + "s", joined.upper(), joined.title()):
                url = f"https://app.example.com/{written}/{token}"
                assert R.redact_url(url) == f"https://app.example.com/{written}/{REDACTED}", url


def test_a_second_token_in_the_segment_after_the_first_is_kept_with_it():
    # Only the first long segment after the purpose is the token: what follows is the page's.
    url = "https://app.example.com/reset/Zx81kq0Pmn3Lw92Bb7Rt/Ab12Cd34Ef56Gh78Ij"
    assert R.redact_url(url) == f"https://app.example.com/reset/{REDACTED}/Ab12Cd34Ef56Gh78Ij"
    url = "https://app.example.com/reset/Zx81kq0Pmn3Lw92Bb7Rt/confirm/Ab12Cd34Ef56Gh78Ij"
    assert R.redact_url(url) == f"https://app.example.com/reset/{REDACTED}/confirm/{REDACTED}"


def test_such_tokens_come_with_the_default_keys_not_with_keys_given_instead():
    for url, expected in LINKS:
        assert Redactor(extra=["ssn"]).redact_url(url) == expected
        assert Redactor(keys=["password"]).redact_url(url) == url
        assert Redactor(keys=()).redact_text(f"see {url}") == f"see {url}"


_TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(alphabet=_TOKEN, min_size=16, max_size=80).filter(
        lambda t: any(c.isdigit() for c in t) and any(c.isalpha() for c in t)
    ),
    purpose=st.sampled_from(["reset", "reset-password", "password_reset", "magic", "magic-link", "login", "verify", "confirm", "invite", "activate"]),
    before=st.sampled_from(["", "/accounts", "/u/acme", "/en-gb"]),
    between=st.sampled_from(["", "/MQ", "/42"]),
    after=st.sampled_from(["", "/", "/edit", "?email=a%40b.c", "#done"]),
)
def test_any_such_token_is_redacted_and_the_rest_kept(token, purpose, before, between, after):
    url = f"https://app.example.com{before}/{purpose}{between}/{token}{after}"
    assert_masked_once_for_all(url, f"https://app.example.com{before}/{purpose}{between}/{REDACTED}{after}")


def assert_masked_once_for_all(url: str, expected: str) -> None:
    """``url`` becomes ``expected``, alone or in a sentence, and ``expected`` stays."""
    redacted = R.redact_url(url)
    assert redacted == expected
    assert R.redact_url(redacted) == redacted
    assert R.redact_text(f"clicked {url} twice") == f"clicked {expected} twice"


def test_appended_clicks_keep_no_such_token_and_an_older_releases_copy_is_a_duplicate_when_resent(log):
    events = [
        triggered("r1", data={"reset_link": LARAVEL}),
        ev("message.queued", message_id="m1", run_id="r1", channel="email", recipient="ana@example.com"),
        ev("message.clicked", message_id="m1", url=DJANGO),
    ]
    ledger.append_input(log, jsonl(events))
    text = orjson.dumps([e.body for e in log.run_events("r1")]).decode()
    assert _HEX64 not in text and "8d4f2e0a1b2c" not in text
    assert LARAVEL_REDACTED in text
    # Stored whole by a release that knew no such token, then sent again: a duplicate.
    older = triggered("r2", data={"invite": INVITE, "reset": RAILS})
    stored_as_an_older_release_did(log, [older])
    before = log.run_events("r2")[0].body
    assert before["data"] == {"invite": INVITE, "reset": RAILS}
    result, _ = ledger.append_input(log, jsonl([older]))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r2")[0].body == before


def test_scan_secrets_finds_such_tokens_an_older_release_stored(log):
    stored_as_an_older_release_did(
        log,
        [
            triggered("r1", data={"link": RAILS}),
            ev("run.failed", run_id="r1", error=f"could not send {INVITE}: 550"),
            triggered("r2", data={"link": "https://app.example.com/reset-password/new"}),
        ],
    )
    scan = ledger.scan_secrets(log, Redactor())
    assert (scan.events_read, scan.found) == (3, 2)
    places = {(f.type, f.run_id, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {
        ("run.triggered", "r1", "data.link"): RAILS_REDACTED,
        ("run.failed", "r1", "error"): f"could not send {INVITE_REDACTED}: 550",
    }


# One-time links whose token is a query's parameter under a name no secret's by itself.
_CODE = "CfDJ8Kx1aB2cD3eF4gH5iJ6kL7mN8oP9"
QUERY_LINKS = [
    # ASP.NET Identity's reset and confirmation links.
    (
        f"https://app.example.com/Account/ResetPassword?userId=42&code={_CODE}",
        f"https://app.example.com/Account/ResetPassword?userId=42&code={REDACTED}",
    ),
    (
        "https://app.example.com/Identity/Account/ConfirmEmail?userId=42&code=Q2ZESjhLeDFhQjJj%2FRDNlRjRn%2BSDVp%3D&returnUrl=%2F",
        f"https://app.example.com/Identity/Account/ConfirmEmail?userId=42&code={REDACTED}&returnUrl=%2F",
    ),
    # Auth0's tickets.
    ("https://acme.auth0.com/lo/reset?ticket=Xy7pQ2rT9sLm4Nb8Vc3Zk1Wd6Hf0Gj5A#", f"https://acme.auth0.com/lo/reset?ticket={REDACTED}#"),
    (
        "https://acme.us.auth0.com/u/email-verification?ticket=Xy7pQ2rT9sLm4Nb8Vc3Zk1Wd6Hf0Gj5A#",
        f"https://acme.us.auth0.com/u/email-verification?ticket={REDACTED}#",
    ),
    # WordPress's reset key (20 letters and digits), the user's login kept.
    (
        "https://blog.example.com/wp-login.php?action=rp&key=aB3dE5fG7hJ9kL1mN2pQ&login=ana",
        f"https://blog.example.com/wp-login.php?action=rp&key={REDACTED}&login=ana",
    ),
    # Supabase's email link.
    (
        "https://proj.supabase.co/auth/confirm?token_hash=pkce_8f3a1b2c3d4e5f60718293a4b5c6&type=email",
        f"https://proj.supabase.co/auth/confirm?token_hash={REDACTED}&type=email",
    ),
    # Firebase's out-of-band code, whatever its mode (its name is Firebase's alone).
    (
        "https://proj.firebaseapp.com/__/auth/action?mode=recoverEmail&oobCode=Zx81kq0Pmn3Lw92Bb7Rt_AbCd&lang=en",
        f"https://proj.firebaseapp.com/__/auth/action?mode=recoverEmail&oobCode={REDACTED}&lang=en",
    ),
    # A purpose in an earlier parameter's value; the name in any case.
    (
        "https://app.example.com/auth/action?mode=resetPassword&CODE=zx81kq0pmn3lw92bb7rt.",
        f"https://app.example.com/auth/action?mode=resetPassword&CODE={REDACTED}.",
    ),
]


@pytest.mark.parametrize("url, expected", QUERY_LINKS)
def test_a_one_time_links_token_in_its_query_is_redacted_wherever_the_link_stands(url, expected):
    assert_redacted_wherever_it_stands(url, expected)
    assert R.redact_text(f'<a href="{url.replace("&", "&amp;")}">Reset</a>') == f'<a href="{expected.replace("&", "&amp;")}">Reset</a>'
    # Go's encoding/json writes & as \u0026.
    go = '{"url": "%s"}' % url.replace("&", "\\u0026")
    assert R.redact_text(go) == '{"url": "%s"}' % expected.replace("&", "\\u0026")


@pytest.mark.parametrize("url, expected", QUERY_LINKS)
@pytest.mark.parametrize("times", [1, 2, 3])
def test_such_a_query_token_inside_a_url_encoded_in_another_is_redacted(url, expected, times):
    encoded = url
    token = expected_token(url, expected)
    encoded_token = token
    for _ in range(times):
        encoded, encoded_token = quote(encoded, safe=""), quote(encoded_token, safe="")
    tracked = f"https://t.example/ls/click?u={encoded}&id=7"
    redacted = R.redact_url(tracked)
    assert redacted == tracked.replace(encoded_token, REDACTED), redacted
    assert R.redact_url(redacted) == redacted


@pytest.mark.parametrize(
    "text",
    [
        # No purpose in the URL: a promotion's code, a shop's ticket, a map's key.
        "https://shop.example.com/cart?code=SUMMERSALE2024ABCD",
        "https://events.example.com/order?ticket=Xy7pQ2rT9sLm4Nb8Vc3Z",
        "https://maps.example.com/embed?key=aB3dE5fG7hJ9kL1mN2pQ",
        # A purpose, but a value too short, or a word of one case with no digit.
        "https://shop.example.com/reset?code=SUMMER20",
        "https://shop.example.com/reset?code=Zx81kq0Pmn3Lw92",  # 15 characters
        "https://shop.example.com/reset?code=summersaleeveryday",
        "https://shop.example.com/reset?code=SUMMERSALEEVERYDAY",
        # A purpose only after the parameter, in the prose before the URL, in another URL
        # before it, or in the outer URL of an encoded one.
        "https://app.example.com/home?code=Zx81kq0Pmn3Lw92Bb7Rt&next=%2Freset",
        "reset it at https://app.example.com/home?code=Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset/new https://app.example.com/home?code=Zx81kq0Pmn3Lw92Bb7Rt",
        "https://t.example/confirm?u=https%3A%2F%2Fshop.example.com%2Fcart%3Fcode%3DZx81kq0Pmn3Lw92Bb7Rt",
        "https://t.example/confirm?u=https://shop.example.com/cart?code=Zx81kq0Pmn3Lw92Bb7Rt",
        "https:\\/\\/t.example\\/confirm?u=https:\\/\\/shop.example.com\\/cart?code=Zx81kq0Pmn3Lw92Bb7Rt",
        "reset it at /home?code=Zx81kq0Pmn3Lw92Bb7Rt",
        '{"next":"/reset","link":"/cart?code=Zx81kq0Pmn3Lw92Bb7Rt"}',
        # Names that merely end or start with one of them.
        "https://app.example.com/reset?promocode=Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset?codes=Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset?keyword=Zx81kq0Pmn3Lw92Bb7Rt",
        "https://app.example.com/reset?codeword_Zx81kq0Pmn3Lw92Bb7Rt",
    ],
)
def test_a_query_lookalike_is_kept_byte_for_byte(text):
    assert_kept_beside(text, *QUERY_LINKS[0])


def test_every_such_parameter_of_a_link_is_redacted_and_one_masked_names_nothing():
    # A second parameter after a first, masked or not, in the same link.
    url = "https://app.example.com/reset?key=aB3dE5fG7hJ9kL1mN2pQ&code=Zx81kq0Pmn3Lw92Bb7Rt"
    assert R.redact_url(url) == f"https://app.example.com/reset?key={REDACTED}&code={REDACTED}"
    url = "https://app.example.com/reset?code=SUMMER20&ticket=Zx81kq0Pmn3Lw92Bb7Rt"
    assert R.redact_url(url) == f"https://app.example.com/reset?code=SUMMER20&ticket={REDACTED}"
    # A purpose word inside a masked value (Firebase's code, masked whatever the link names)
    # names nothing, as the mask it became does not when the text is redacted again.
    url = "https://proj.firebaseapp.com/__/auth/action?oobCode=Zx81ResetPmn3Lw92Bb7Rt&code=Zx81kq0Pmn3Lw92Bb7Rt"
    expected = f"https://proj.firebaseapp.com/__/auth/action?oobCode={REDACTED}&code=Zx81kq0Pmn3Lw92Bb7Rt"
    assert R.redact_url(url) == expected and R.redact_url(expected) == expected


@pytest.mark.parametrize("eq", ["=", "%3D", "%253D", "\\u003d", "\\u003D"])  # the last two Gson's and .NET's
def test_a_value_glued_to_a_pairs_key_is_left_to_the_key_rules(eq):
    # What looks like the token's tail is a secret pair's key: its value is the secret, as
    # redacted before this rule (and again, unchanged).
    url = f"https://app.example.com/reset?code=Zx81kq0Pmn3Lw92Bb7Rtapi_key{eq}s3cr3tValue9"
    redacted = R.redact_text(url)
    assert redacted == f"https://app.example.com/reset?code=Zx81kq0Pmn3Lw92Bb7Rtapi_key{eq}{REDACTED}"
    assert R.redact_text(redacted) == redacted
    # Base64's padding where the parameter ends: the token's, masked with it.
    for after in ("", "&next=1", "#top", ". Then", "%26next%3D1", '" >', "<br>"):
        url = f"https://app.example.com/reset?code=Zx81kq0Pmn3Lw92Bb7R{eq}{eq}{after}"
        assert R.redact_text(url) == f"https://app.example.com/reset?code={REDACTED}{after}", url


def test_a_link_percent_encoded_in_text_alone_is_redacted():
    # Text with no "=" of its own, the link encoded once (a tracker's parameter logged alone).
    text = "u: https%3A%2F%2Fapp.example.com%2Freset%3Fcode%3DZx81kq0Pmn3Lw92Bb7Rt"
    assert R.redact_text(text) == f"u: https%3A%2F%2Fapp.example.com%2Freset%3Fcode%3D{REDACTED}"


def test_query_tokens_come_with_the_default_keys_not_with_keys_given_instead():
    for url, expected in QUERY_LINKS:
        assert Redactor(extra=["ssn"]).redact_url(url) == expected
        assert Redactor(keys=["password"]).redact_url(url) == url


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(alphabet=_TOKEN, min_size=16, max_size=80).filter(
        lambda t: any(c.isdigit() for c in t) or (any(c.isupper() for c in t) and any(c.islower() for c in t))
    ),
    purpose=st.sampled_from(["/reset", "/Account/ResetPassword", "/lo/reset", "/wp-login.php", "/auth/confirm", "/verify"]),
    name=st.sampled_from(["code", "ticket", "key", "token_hash", "TokenHash", "oobCode", "oob_code", "Code"]),
    before=st.sampled_from(["", "userId=42&", "action=rp&", "mode=verifyEmail&"]),
    after=st.sampled_from(["", "&login=ana", "#", "&type=email", ";x=1"]),
)
def test_any_such_query_token_is_redacted_and_the_rest_kept(token, purpose, name, before, after):
    url = f"https://app.example.com{purpose}?{before}{name}={token}{after}"
    assert_masked_once_for_all(url, f"https://app.example.com{purpose}?{before}{name}={REDACTED}{after}")


def test_an_older_releases_copy_of_a_query_token_is_a_duplicate_and_scan_secrets_finds_it(log):
    (url, expected), (other, other_expected) = QUERY_LINKS[0], QUERY_LINKS[2]
    older = [
        triggered("r1", data={"link": url}),
        ev("run.failed", run_id="r1", error=f"could not send {other}: 550"),
    ]
    stored_as_an_older_release_did(log, older)
    before = [e.body for e in log.run_events("r1")]
    assert before[0]["data"] == {"link": url}
    result, _ = ledger.append_input(log, jsonl(older))
    assert (result.duplicates, result.appended) == (2, 0)
    assert [e.body for e in log.run_events("r1")] == before
    scan = ledger.scan_secrets(log, Redactor())
    places = {(f.type, p.path): p.redacted for f in scan.findings for p in f.fields}
    assert places == {
        ("run.triggered", "data.link"): expected,
        ("run.failed", "error"): f"could not send {other_expected}: 550",
    }
    # Appended now, no token is stored.
    ledger.append_input(log, jsonl([triggered("r2", data={"link": url})]))
    assert log.run_events("r2")[0].body["data"] == {"link": expected}
