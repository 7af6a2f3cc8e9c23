"""Redaction of secrets before an event is stored.

The log cannot be edited, so a secret that reaches it stays there: every way in runs
events through a :class:`Redactor` before they are encoded. Secrets are found by key (the
value under ``token``, ``password``, …) and inside text: a URL's password, secret query or
fragment parameters and signature (of URLs encoded inside others too), ``Bearer``/``Basic``
credentials, ``key=value`` / ``key: value`` pairs, XML elements and values named by a key
beside them (a header list's entry, a tag's attributes) in messages, and tokens known by
their form (see :meth:`Redactor.redact_text` for the exact rules).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[REDACTED]"
"""What a secret value is replaced by."""

DEFAULT_SECRET_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "cookie",
        "set_cookie",
        "private_key",
        "secret_key",
        "session_token",
        "x_auth_token",
        "aws_secret_access_key",
    }
)
"""Keys whose values are secrets, compared in any case and spelling (see :func:`normalize_key`)."""

FREE_FORM_FIELDS = ("data", "output", "request", "response", "error", "raw")
"""The event fields that may hold anything, and so may hold secrets."""

URL_FIELDS = ("url",)
"""The top-level event fields that hold a URL (message.clicked's link)."""

TEXT_FIELDS = ("reason",)
"""The top-level event fields of free text besides ``error`` (a bounce reason is the same
provider text that a failure's error is)."""

_FIELDS = FREE_FORM_FIELDS + URL_FIELDS + TEXT_FIELDS
_LOOKED_INTO = frozenset(_FIELDS)


def normalize_key(key: str) -> str:
    """Fold a key so that Set-Cookie, set_cookie, SET-COOKIE and setCookie compare equal."""
    # Separators dropped, not unified: services spell one key access_token, accessToken,
    # access-token and Access.Token alike.
    return key.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")


# A header list's entries name the header under one key and hold its value under another.
_HEADER_NAME = frozenset({"name", "key", "header"})
_HEADER_VALUE = frozenset({"value", "values"})


_DEFAULT_FOLDED = frozenset(normalize_key(k) for k in DEFAULT_SECRET_KEYS)

SECRET_KEY_ENDINGS: tuple[str, ...] = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "token",
    "credential",
    "credentials",
    "api_key",
    "access_key",
    "secret_key",
    "private_key",
    "signing_key",
    "account_key",
    "auth_key",
    "encryption_key",
    "master_key",
)
"""The last words that make any key a secret one with the default keys (``webhook_secret``,
``X-Postmark-Server-Token``, ``verify_token``, ``SharedAccessKey``), compared folded."""

SIGNED_URL_PARAMS: tuple[str, ...] = ("signature", "hmac", "sig", "hdnts", "hdnea", "hdntl", "wowzatokenhash")
"""URL parameters that sign a URL for access, so that the URL itself is a credential until
it expires (S3's ``X-Amz-Signature``, CloudFront's ``Signature``, Google Cloud Storage's
``X-Goog-Signature``, an Azure SAS's ``sig``, a Shopify app link's ``hmac``, Akamai's tokens,
Wowza's ``wowzatokenhash``): with the default keys their values are redacted in URLs,
``signature`` and ``hmac`` as a name's last word, the others as the whole name."""

# Services name their secrets freely (a provider's header, an app's own setting): a key that
# ends in one of these words holds a secret whatever comes before it. Folded, the words'
# separators are gone, so "pagetoken" ends in "token" as "page_token" does.
_ENDINGS_FOLDED = tuple(normalize_key(k) for k in SECRET_KEY_ENDINGS)
_SIGNATURE_ENDINGS = SIGNED_URL_PARAMS[:2]  # folded already
_SIGNATURE_NAMES = frozenset(SIGNED_URL_PARAMS[2:])


def _tails(keys: frozenset[str]) -> frozenset[str]:
    """Every end of a folded key but the whole key: what the last words of a key of several
    words fold to ("key" of "apikey", "accesskey" of "awssecretaccesskey")."""
    return frozenset(k[i:] for k in keys for i in range(1, len(k)))


_DEFAULT_TAILS = _tails(_DEFAULT_FOLDED | frozenset(_ENDINGS_FOLDED))
_SECRET, _TAIL = 2, 1  # what a name met in text folds to (Redactor._name_kind)

# Secrets inside text are found from their anchors, which a plain scan finds fast: "://"
# (a URL), "=", "=>" or ":" after a key, the words Bearer and Basic, and the ">" that ends an
# XML element's tag. The key is then read backwards and the value forwards.
_ANCHOR = re.compile(
    r"""[:=Bb>](?:
        (?<=:)(?P<url>//)
      | (?<=:)(?=[ \t])
      | (?<=["']:)
      | (?<=[A-Za-z_\]]:)(?![\s/:=])
      | (?<==)(?!=)
      | (?<=[Bb])(?P<auth>(?i:earer|asic))(?=[ \t])
      | (?<=>)(?P<xml>)(?!<(?!!\[CDATA\[))
    )""",
    re.X,
)
# What ends a URL in text: white space, quotes, angle brackets, a backslash, a backtick.
_URL_BODY = re.compile(r"""[^\s"'<>\\`]*""")
# A key's value: a quoted string (its quotes kept), or a bare run up to white space, a
# quote, & , ; < or >, those written as JSON's escapes too (\u0026: Go's encoder writes
# every & so; PHP's may write quotes so), or an escaped quote (\": the end of a JSON
# string inside a JSON string; \\ is an escaped backslash, the value's). [REDACTED] is
# matched whole, so that it is seen as redacted already.
_VALUE = re.compile(
    r"""("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\[REDACTED\]|(?:[^\s&,;"'<>\\]+|\\\\|\\(?!u00(?:2[267]|3[cCeE])|["']))+)"""
)
# "=" as Gson writes it in a JSON string by default (\u003d, with & as \u0026): a Java
# service's body kept as text holds its URLs' and forms' pairs so.
_ESCAPED_EQ = re.compile(r"\\u003[dD]")
# After a quoted key, a bare value (a number, null, …) ends as JSON's do; an object or
# array is not parsed. A mask inside it (a known token glued to it: "abc-----BEGIN …") is
# part of it, so that no "]" of the mask is left behind.
_QUOTED_KEY_VALUE = re.compile(
    r"""("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\[REDACTED\]|[^\s,;{}\[\]()"'](?:\[REDACTED\]|[^\s,;}\])"'])*)"""
)
# The rest of a line, from a quote not closed on it.
_LINE_REST = re.compile(r"[^\r\n]*")
# After a key quoted inside a quoted text (\\"token\\": 123), a bare value ends at a backslash too.
_ESCAPED_KEY_VALUE = re.compile(r"""[^\s,;{}\[\]()"'\\][^\s,;}\])"'\\]*""")
# An auth scheme word before a credential, in an Authorization header's value.
_SCHEME = re.compile(r"(?i:bearer|basic|digest|token|negotiate|ntlm)[ \t]+(?=\S)")
# Any other scheme word before a credential (ApiKey, SSWS, Klaviyo-API-Key): ordinary or
# CamelCase words, joined by hyphens (a raw key such as sk-proj-AbC123 is none: it is the
# credential).
_OTHER_SCHEME = re.compile(r"""([A-Za-z]+(?:-[A-Za-z]+)*)[ \t]+(?=[^\s"'])""")
_SCHEME_WORD = re.compile(r"[A-Z]?[a-z]{1,23}|[A-Z]{1,12}|(?:[A-Z][a-z]+){2,3}")
# A Bearer or Basic credential (RFC 6750's b64token). What follows it decides (see
# Redactor._credential): white space, the text's end or punctuation ends it; "=" and a value
# make it a pair ("Bearer token=[REDACTED]", "Bearer realm=\"api\""); anything else is more
# of it ("Bearer abc%2Bdef").
_CREDENTIAL = re.compile(r"""[ \t]+(\[REDACTED\]|[A-Za-z0-9\-._~+/]+=*)""")
# What follows a key and makes it one, after Bearer/Basic: ": ", " : ", "= ", " = ", " =x",
# "=>" (right after the word, "=x" is a pair: the rule before it).
_KEY_FOLLOWS = re.compile(r"[ \t]*(?::[ \t]|=>|=[ \t])|[ \t]+=(?!=)")
_CREDENTIAL_ENDS = frozenset(",;:)]}\"'<>!?")
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/")
# The rest of a credential followed by characters a b64token does not hold (a mask in it,
# from a URL encoded inside it, is taken whole).
_CREDENTIAL_TAIL = re.compile(r"""(?:\[REDACTED\]|[^\s,;"'<>)\]}])*""")

# A value after "key: " (or Bearer/Basic) that is one ordinary word stays: "password:
# required", "token: expired", "Bearer token missing" keep their meaning. Credentials are
# random mixes of cases and digits; an all-lower-case word of letters is taken for English.
_PLAIN_WORD = re.compile(r"[A-Z]?[a-z]{1,23}|[A-Z]{1,12}")

# Literal words a quoted key's value may be that hold nothing secret.
_NOTHING = frozenset({"null", "None", "nil", "undefined", "true", "false", "True", "False"})

# A URL's query or fragment parameter's name, after ? & ; or # (a ? inside a value, as in a
# nested URL, starts a name too); its value runs to the next & ; or #.
_URL_PARAM = re.compile(r"[?&;#]([^=&;#?]*)=")
_URL_VALUE_END = re.compile(r"[&;#]")
_AUTHORITY_END = re.compile(r"[/?#]")

# Keys and URL schemes are read backwards from their anchor: matched on the reversed text.
_MAX_KEY = 64
# One more than a key's most (a run that long is no key), and "u0026" (\u0026 before a
# parameter's name, Go's &, is read with it, then set apart).
_KEY_BACKWARDS = re.compile(r"[A-Za-z0-9_.\-]{0,%d}" % (_MAX_KEY + 1 + len("u0026")))
_SCHEME_BACKWARDS = re.compile(r"[A-Za-z0-9+.\-]*")
_CLOSERS = {")": "(", "]": "[", "}": "{"}

# A key glued to its value by a colon: a letter or a bracket before it (a time's or a port's
# digits are no key's), no space, slash, colon or "=" after it.
_GLUED_COLON = re.compile(r"[A-Za-z_\]]:(?![\s/:=])")

# A URL percent-encoded inside another (a click tracker's ?u=https%3A%2F%2F…), once or more
# (%253D is an "=" encoded twice): its pairs are found from their encoded "=", the name read
# backwards to an encoded separator (? & ; # / : = , space or a quote) and decoded, the value
# run to the next separator, encoded or not, or to a character no URL holds.
_ENCODED = "%(?:25)*"
_ENCODED_EQ = re.compile(_ENCODED + "3[Dd]")
_ENCODED_NAME_BACKWARDS = re.compile(r"[A-Za-z0-9_.\-~%%+\[\]]{0,%d}" % (3 * _MAX_KEY))
_ENCODED_SEP = re.compile(_ENCODED + "(?:3[FfAaDdBb]|2[0236CcFf7])")
_ENCODED_VALUE_END = re.compile(r"""[&;#\s"'<>{}|\\^`\[\]]|""" + _ENCODED + "(?:26|3[Bb]|23|2[027])")
# An encoded URL's user:password@ ("https%3A%2F%2Fapp%3Apw%40db"): the authority runs from the
# encoded "://" to the next / ? # & or ;, encoded or not.
_ENCODED_AUTHORITY = re.compile(_ENCODED + "3[Aa]" + _ENCODED + "2[Ff]" + _ENCODED + "2[Ff]")
_ENCODED_AUTHORITY_END = re.compile(r"""[/?#&;\s"'<>]|""" + _ENCODED + "(?:2[Ff]|3[Ff]|23|26|3[Bb])")
_ENCODED_AT = re.compile(_ENCODED + "40")
_ENCODED_COLON = re.compile(_ENCODED + "3[Aa]")

# Where a token known by its form may start: not glued to a word, or right after a percent
# escape, encoded up to three times (a magic link's token inside a click tracker's
# ?u=https%3A%2F%2Fapp%2Fmagic%2FeyJ…: the escape's last digit is no part of a word).
_TOKEN_START = r"(?:(?<![A-Za-z0-9_\-])|(?<=%[0-9A-Fa-f]{2})|(?<=%25[0-9A-Fa-f]{2})|(?<=%2525[0-9A-Fa-f]{2}))"

# Tokens known by their form wherever they stand, with no key before them: a JSON Web Token
# (three or five base64url parts, the first a JSON object's: "eyJ"), and by their prefixes
# the keys of SendGrid, Stripe, Slack (its app-level and refresh tokens too), GitHub,
# Mailgun, Brevo (its API and SMTP keys), Mailchimp (32 hex digits, then its data centre),
# HubSpot's private apps, OpenAI and Anthropic (the AI steps of a workflow), npm, GitLab and
# Shopify. The channels' own: Meta's access tokens (WhatsApp's Cloud API, Messenger:
# "EAA" and 80 or more letters and digits), a Telegram bot's token (its id, a colon, "A" and
# 34 more), a Twilio auth token or API key secret after its SID and a colon (the SID, no
# secret, is kept). Webhook signing secrets (Stripe's, Svix's: "whsec_"), Google's OAuth
# access and refresh tokens and client secrets (a Gmail or Sheets step's: "ya29.", "1//0",
# "GOCSPX-"), and the tokens of Airtable, Notion and Linear (an automation's other apps).
# Looked for only where a prefix's hint is in the text (see _known_tokens).
_KNOWN_TOKEN = re.compile(
    _TOKEN_START
    + r"""(?:
        eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)?
      | SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}
      | [sr]k_(?:live|test)_[A-Za-z0-9]{10,}
      | xox[abposre]-[A-Za-z0-9-]{10,}
      | gh[pousr]_[A-Za-z0-9]{30,}
      | github_pat_[A-Za-z0-9_]{30,}
      | key-[0-9a-z]{32}
      | xapp-\d-[A-Za-z0-9-]{10,}
      | x(?:keysib|smtpsib)-[0-9a-f]{64}-[A-Za-z0-9]{16}
      | [0-9a-f]{32}-us\d{1,2}
      | pat-(?:na|eu|ap)\d-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
      | sk-(?:proj|svcacct|admin|ant-[a-z]+\d\d)-[A-Za-z0-9_-]{20,}
      | sk-[A-Za-z0-9]{40,}
      | npm_[A-Za-z0-9]{36}
      | glpat-[A-Za-z0-9_-]{20,}
      | shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}
      | EAA[A-Za-z0-9]{80,}
      | \d{5,16}:A[A-Za-z0-9_-]{34}
      | (?<=AC[0-9a-fA-F]{32}:|SK[0-9a-fA-F]{32}:)[A-Za-z0-9]{32}
      | whsec_[A-Za-z0-9+/]{24,}={0,2}
      | ya29\.[A-Za-z0-9_-]{20,}
      | 1//0[A-Za-z0-9_-]{40,}
      | GOCSPX-[A-Za-z0-9_-]{28}
      | pat[A-Za-z0-9]{14}\.[0-9a-f]{64}
      | ntn_\d{11}[A-Za-z0-9]{35}
      | secret_[A-Za-z0-9]{43}
      | lin_api_[A-Za-z0-9]{40}
    )(?![A-Za-z0-9_])""",
    re.X,
)

# More tokens known by their form, apart from the list above so that a text holding one of
# its hints does not pay for these alternatives too (each is tried at every position): a
# Discord bot's token, its user id's digits in base64 (their every character's bits fix
# which letters stand where, so a host name or a word cannot pass for it), a dot, six
# characters, a dot and 27 to 38 more; the AI steps' other keys: Hugging Face ("hf_"), Groq
# ("gsk_"), Replicate ("r8_"), Perplexity ("pplx-") and xAI ("xai-"); and a Telegram bot's
# token, a Twilio pair and a Google refresh token percent-encoded (inside a URL given as a
# parameter), their colon or slashes escaped once or more.
_MORE_KNOWN_TOKEN = re.compile(
    _TOKEN_START
    + r"""(?:
        (?:[MNO][DTjz][AEIMQUYcgk][w-z0-5]){5,6}(?:[MNO][AQgw]|[MNO][DTjz][AEIMQUYcgk])?
            \.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}
      | hf_[A-Za-z]{34}
      | gsk_[A-Za-z0-9]{52}
      | r8_[A-Za-z0-9]{37}
      | pplx-[A-Za-z0-9]{48}
      | xai-[A-Za-z0-9]{80}
      | \d{5,16}%(?:25)*3[Aa]A[A-Za-z0-9_-]{34}
      | (?:(?<=AC[0-9a-fA-F]{32}%3[Aa])|(?<=SK[0-9a-fA-F]{32}%3[Aa])
          |(?<=AC[0-9a-fA-F]{32}%253[Aa])|(?<=SK[0-9a-fA-F]{32}%253[Aa])
          |(?<=AC[0-9a-fA-F]{32}%25253[Aa])|(?<=SK[0-9a-fA-F]{32}%25253[Aa]))[A-Za-z0-9]{32}
      | 1%(?:25)*2[Ff]%(?:25)*2[Ff]0[A-Za-z0-9_-]{40,}
    )(?![A-Za-z0-9_])""",
    re.X,
)

# Airtable's tokens start with "pat", as many words do: its dot after 14 letters and digits
# is the hint.
_AIRTABLE_HINT = re.compile(r"pat[A-Za-z0-9]{14}\.")
# A Twilio SID before a percent escape (its colon encoded): many encoded URLs hold "AC".
_TWILIO_ENCODED_HINT = re.compile(r"(?:AC|SK)[0-9a-fA-F]{32}%")
# A Discord bot's token (55 characters or more) ends in its dots' six characters and 27 or
# more: the hint (a search from a literal dot, three times as fast as from the id's start).
_DISCORD_HINT = re.compile(r"\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}")

# Signed media URLs whose signature is known by its form rather than its name (the service's
# own host or a custom domain, so no host is asked for): imgix's "s" parameter, the MD5 of
# the path and query with the source's token (32 hex digits); Cloudinary's path part "s--",
# 8 (or 32) base64url characters and "--"; and an Akamai token's "~hmac=" (32 to 64 hex
# digits), whatever names the token (a parameter, or an HLS segment's path: "/hdntl=exp=…~
# hmac=…/"). The first two percent-encoded inside another URL too, up to three times (the
# escapes' hex digits in either case; an encoded ~hmac is a pair whose name ends in hmac,
# found as such), imgix's after Go's JSON's \u0026 (and with Gson's \u003d) too. Each
# match starts with a literal, so that a text is scanned fast.
_SIGNED_MEDIA = re.compile(
    r"""(?:
        (s(?:(?<=[?&;]s)|(?<=\\u0026s)|(?<=%3[FfBb]s)|(?<=%26s)|(?<=%253[FfBb]s)|(?<=%2526s)|(?<=%25253[FfBb]s)|(?<=%252526s))
          (?:=|\\u003[dD]|%(?:25)*3[Dd]))[0-9a-f]{32}(?![A-Za-z0-9_\-])
      | (s--(?:(?<=/s--)|(?<=%2[Ff]s--)|(?<=%252[Ff]s--)|(?<=%25252[Ff]s--)))
          [A-Za-z0-9_-]{8}(?:[A-Za-z0-9_-]{24})?(?=--(?:/|\\/|%(?:25)*2[Ff]))
      | (~hmac=)[0-9a-f]{32,64}(?![A-Za-z0-9_\-])
    )""",
    re.X,
)


# A one-time link's token in its path: a password reset's, a magic sign-in's, an address
# confirmation's, an invitation's (a click on it is its message's click event, url and all).
# The segment after one naming the link's purpose, past at most one short segment (Django's
# /reset/<uid>/<token>/) or two of digits alone (Drupal's /user/reset/<uid>/<time>/<hash>),
# when it has 16 or more characters with a digit and a letter (Laravel's /reset-password/<64
# hex digits>, Rails' /passwords/<signed id>/edit, an invitation's UUID), a sentence's full
# stop after it kept; its slashes plain, escaped (\/)
# or percent-encoded up to three times. Shorter or wordy segments (/reset/new,
# /confirm/email-sent) are the site's own pages.
_PATH_SEP = r"(?:/|\\/|%(?:25){0,2}2[Ff])"
_PATH_CHAR = r"(?:[A-Za-z0-9_.~=+\-]|%(?:25){0,2}3[Dd])"
_ONE_TIME_PATH = re.compile(
    rf"""({_PATH_SEP}(?i:
        (?:forgot[-_]?)?password(?:[-_]?reset)? | reset(?:[-_]?password)?
      | magic(?:[-_]?(?:link|log[-_]?in|sign[-_]?in))? | log[-_]?in | sign[-_]?in
      | verif(?:y|ication)(?:[-_]?e-?mail)? | confirm(?:ation)?(?:[-_]?e-?mail)?
      | activat(?:e|ion) | invit(?:e|ation) | unlock | token
      )s?{_PATH_SEP}(?:{_PATH_CHAR}{{1,15}}{_PATH_SEP}|[0-9]{{1,15}}{_PATH_SEP}[0-9]{{1,15}}{_PATH_SEP})?)
    (?=(?:{_PATH_CHAR})*?[0-9])(?=(?:{_PATH_CHAR})*?[A-Za-z])(?:{_PATH_CHAR}){{16,}}(?<!\.)(?=\.*(?!{_PATH_CHAR}))""",
    re.X,
)


# A one-time link's token given as a query's parameter under a name that holds no secret by
# itself (a "code" is a promotion's too): ASP.NET Identity's "code"
# (/Account/ResetPassword?userId=…&code=…), Auth0's "ticket" (/lo/reset?ticket=…),
# WordPress's "key" (wp-login.php?action=rp&key=…), Supabase's "token_hash"
# (/auth/confirm?token_hash=…); Firebase's "oobCode" (…?mode=resetPassword&oobCode=…), no
# other's, wherever it stands. The value is the link's token where the URL holding it names a
# purpose before it (a word of the path rule's purposes from its scheme on: its host, path or
# an earlier parameter's value) and it has 16 or more characters with a digit, or with
# letters of both cases. Plain, escaped (\u0026 for &, \u003d for =) or percent-encoded up
# to three times (the value's own escapes one level deeper).
_ONE_TIME_PARAM = re.compile(
    r"(?:[?&;]|\\u0026|%(?:25){0,2}(?:3[Ff]|26|3[Bb]))(?i:(oob_?code)|code|ticket|key|token_?hash)(?:=|\\u003[dD]|%(?:25){0,2}3[Dd])"
)
# Its value: base64's "=", plain or encoded, only at its end, where the parameter ends (a
# separator, plain or encoded, a quote, white space or punctuation after it): else the "="
# is a pair's, whose key is glued to the value (or its value masked already).
_ONE_TIME_VALUE = re.compile(
    r"""(?:[A-Za-z0-9_.~+\-]+|%(?:25){0,3}2[BbFf])+(?:(?:=|\\u003[dD]|%(?:25){0,3}3[Dd]){1,2}(?=$|[&#;\s"'<>\\.,)\]}]|%(?:25){0,3}(?:2[0236]|3[Bb])))?"""
)
# The purposes' words, in lower case (the text is searched lowered): _known_tokens' hints for
# the path rule, "log" and "sign" whole words here.
_PURPOSE_WORD = re.compile(r"reset|passw|magic|log[-_]?in|sign[-_]?in|verif|confirm|activat|invit|unlock|token")
# Where the URL holding a parameter begins, read backwards from it: after its scheme's "://"
# (plain, escaped or encoded: an encoded URL begins inside another) or after what ends a URL
# in text (a purpose in the prose before it names nothing).
_URL_BEGINS_BACKWARDS = re.compile(r"""//:|/\\/\\:|[Ff]2(?:52){0,2}%[Ff]2(?:52){0,2}%[Aa]3(?:52){0,2}%|[\s"'<>]""")


def _one_time_params(text: str) -> str:
    """Text with the tokens of one-time links given as a query's parameter replaced (see
    _ONE_TIME_PARAM); the same string when it holds none."""
    pieces: list[str] = []
    done = 0
    lowered = backwards = ""
    read = 0  # up to where the text before the parameters was read
    named = False  # whether a purpose stands between the URL's beginning and ``read``
    for m in _ONE_TIME_PARAM.finditer(text):
        at = m.start()
        if m[1] is None:
            # Each stretch between parameters is read once, backwards to the URL's beginning
            # within it, if any, and for a purpose after that.
            if not lowered:
                lowered, backwards = text.lower(), text[::-1]
            size = len(text)
            begins = _URL_BEGINS_BACKWARDS.search(backwards, size - at, size - read)
            if begins is not None:
                named = _PURPOSE_WORD.search(lowered, size - begins.start(), at) is not None
            elif not named:
                named = _PURPOSE_WORD.search(lowered, read, at) is not None
            read = at
            if not named:
                continue
        found = _ONE_TIME_VALUE.match(text, m.end())
        value = found[0].rstrip(".") if found else ""
        end = m.end() + len(value)
        if text.startswith("=", end) or _ENCODED_EQ.match(text, end) or _ESCAPED_EQ.match(text, end):
            continue  # its end is a pair's key (glued to it): the key rules' to read
        if len(value) < 16 or not (
            any(c.isdigit() for c in value) or (any(c.isupper() for c in value) and any(c.islower() for c in value))
        ):
            continue
        pieces.append(text[done : m.end()])
        pieces.append(REDACTED)
        done = read = end  # a purpose inside a masked value names nothing
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


# Thumbor's and imagor's signed image URLs: the first segment of the path is the signature,
# the URL-safe base64 of an HMAC-SHA1 (27 characters and "=") or HMAC-SHA256 (43 and "=") of
# the rest with the server's key. Plain, with slashes escaped (\/), or percent-encoded up
# to three times inside another URL. Group 1 (the scheme and host) is kept.
_E3 = "%(?:25){0,2}"
_IMAGE_SIGNATURE = re.compile(
    rf"""(?:
        ((?:https?:)?(?:/|\\/){{2}}[^/\\\s"'<>?#%]+(?:/|\\/))(?:[A-Za-z0-9_-]{{27}}|[A-Za-z0-9_-]{{43}})=(?=/|\\/)
      | (https?{_E3}3[Aa](?:{_E3}2[Ff]){{2}}(?:[A-Za-z0-9.\-]|{_E3}3[Aa])+{_E3}2[Ff])
          (?:[A-Za-z0-9_-]{{27}}|[A-Za-z0-9_-]{{43}}){_E3}3[Dd](?={_E3}2[Ff])
    )""",
    re.X,
)


def _credential_urls(slash: str, colon: str, tenant: str, tail: str) -> str:
    """The alternatives of a regex matching the secret part of URLs that are credentials
    themselves, their slashes and colons written as ``slash`` and ``colon`` match them: a
    Slack incoming webhook's last segment, a Discord webhook's token, a Teams webhook's path
    after its ``tenant`` (``tail``), a Telegram bot's token. Group 1 of each is kept."""
    return rf"""
        (hooks\.slack\.com{slash}(?:services|workflows|triggers){slash}(?:[A-Za-z0-9_-]+{slash})+)
            [A-Za-z0-9_-]{{8,}}(?![A-Za-z0-9_-]|{slash})
      | (discord(?:app)?\.com{slash}api(?:{slash}v\d+)?{slash}webhooks{slash}\d+{slash})[A-Za-z0-9_.-]{{8,}}
      | (\.office\.com{slash}webhook(?:b2)?{slash}{tenant}{slash}IncomingWebhook{slash}){tail}
      | (api\.telegram\.org{slash}(?:file{slash})?bot)\d+{colon}[A-Za-z0-9_-]{{8,}}"""


# The secret part of URLs that are credentials themselves (anyone holding one may post), and
# a Google API key anywhere.
_SECRET_URL_PART = re.compile(
    "(?:"
    + _credential_urls("/", ":", r"""[^/\s"'<>?#]+""", r"""[^\s"'<>?#]+""")
    + "\n      | "
    + _TOKEN_START
    + r"AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-]))",
    re.X,
)

# The same URLs percent-encoded inside another, once or more (a click tracker's
# ?u=https%3A%2F%2Fhooks.slack.com%2Fservices%2F…, a callback registered as a parameter):
# their slashes, colons and at signs encoded, their secret part running to the encoded URL's
# end (an & or ; of the outer URL, an encoded ? # & or ;, or a character no URL holds).
_E = "%(?:25)*"
_ENCODED_SECRET_URL_PART = re.compile(
    "(?:"
    + _credential_urls(_E + "2[Ff]", _E + "3[Aa]", rf"(?:[A-Za-z0-9_.~-]|{_E}40)+", rf"(?:[A-Za-z0-9_.~-]|{_E}(?:2[Ff]|40))+")
    + ")",
    re.X,
)

# The same URLs written with their slashes escaped, as PHP's json_encode and others write
# them ("https:\/\/hooks.slack.com\/services\/…"), and such a URL's user:password@.
_ESCAPED_SECRET_URL_PART = re.compile(
    "(?:"
    + _credential_urls(r"\\/", ":", r"""[^/\\\s"'<>?#]+""", r"""(?!\[REDACTED\])(?:[^\s"'<>?#\\]|\\/)+""")
    + r"""
      | ([A-Za-z][A-Za-z0-9+.\-]*:\\/\\/[^\s"'<>\\/@:]*:)(?!\[REDACTED\]@)[^\s"'<>\\/@]+(?=@))""",
    re.X,
)


def _secret_url_part(found: re.Match[str]) -> str:
    """What a match of _SECRET_URL_PART (or its encoded or escaped kin, or of _SIGNED_MEDIA)
    becomes: its kept start, then the mask."""
    return (found[found.lastindex] if found.lastindex else "") + REDACTED


# A private key's PEM block (PKCS #1 and #8, EC, OpenSSH, PGP's "PRIVATE KEY BLOCK"), its
# lines broken by newlines or by "\\n" as JSON writes them, to its END line or, cut short
# (a message truncated), to the end of the text. A certificate's block is public: kept.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
)

# An XML element's tag before its text (<password>…</password>, <ns:AuthToken a="1">…): its
# name, without a namespace prefix, is the key; a self-closing tag ("/>") does not match.
_XML_TAG = re.compile(
    r"""(?:[A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)(?:\s+[A-Za-z_][\w.:\-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*\s*"""
)
_CDATA = "<![CDATA["

# A value's key whose secret is named by another key beside it (see Redactor._named_secret):
# a header list's entry written as text, as JSON or a repr shows it ({"name": "X-Api-Key",
# "value": …}, Postmark's "Name" and "Value"), and a markup tag's attributes (<add
# key="Password" value="…"/>, <input name="csrf_token" value="…">, <meta name="csrf-token"
# content="…">). The naming key is looked for within the same object or tag, this far
# around the value's.
_PAIR_VALUE_KEYS = frozenset({"value", "Value", "VALUE", "content"})
# The keys that name an entry are those of a header list given as an object (_HEADER_NAME).
_PAIR_NAME = re.compile(
    r"""(\\*)(["'])(?i:%s)\1\2\s*(?::|=>)\s*\1\2([^"'\\\n]{1,64})\1\2""" % "|".join(sorted(_HEADER_NAME))
)
_ATTR_NAME = re.compile(r"""\s(?i:name|key|id|type)\s*=\s*(["'])([^"'<>\n]{1,128})\1""")
_PAIR_REACH = 1024
# A brace where JSON has none: "{" not followed by a key's quote or "}", "}" not followed by
# a separator, a closing bracket or quote, or the end (a brace inside a string, mostly).
_ODD_BRACE = re.compile(r"""\{(?![ \t\r\n]*(?:["'}]|\\["']))|\}(?![ \t\r\n]*(?:[,\]}"'\\]|$))""")
# A quoted string (JSON's, a repr's) where one opens, after { [ : or , (so that a quote
# closing a masked value, a region's first, opens none), for blanking its contents.
_QUOTED = re.compile(r"""(?:(?<=[{\[:,])|(?<=[{\[:,] ))("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")


def _blanked(found: re.Match[str]) -> str:
    """A quoted string with its contents blanked, its quotes and its length kept."""
    return found[0][0] + " " * (len(found[0]) - 2) + found[0][-1]


# The same entry written as YAML, its keys on lines of their own (a Kubernetes container's
# env: "- name: DB_PASSWORD" then "  value: …"): a line of the entry's naming key.
_YAML_NAME = re.compile(r"""[ \t]*(?:-[ \t]+)*(?i:name|key)[ \t]*:[ \t]+(["']?)([^"'\s#]{1,64})\1[ \t]*\r?$""")
_YAML_LINES = 8


def _text_marked(text: str) -> bool:
    """Whether text may hold a secret that :meth:`Redactor.redact_text` finds (a cheap test
    first: most strings have none of these marks and are never scanned)."""
    if "=" in text:
        return True  # key=value, and every URL parameter
    # key: value, "key":…, key:value and a URL's user:password@ (no "=" needed there).
    if ":" in text and (
        ": " in text
        or '":' in text
        or "':" in text
        or ":\t" in text
        or ("://" in text and "@" in text)
        or _GLUED_COLON.search(text)
    ):
        return True
    if "%" in text and _ENCODED_EQ.search(text):
        return True  # key%3Dvalue, a URL's pairs encoded inside another
    if "\\u003" in text and _ESCAPED_EQ.search(text):
        return True  # key\u003dvalue, Gson's
    if ">" in text:
        return True  # <password>…</password>
    if len(text) < 7:
        return False  # shorter than "basic x", the shortest credential left to look for
    low = text.lower()
    return "bearer" in low or "basic" in low


def _run_before(pattern: re.Pattern[str], backwards: str, end: int, floor: int) -> int:
    """How many characters right before ``end`` (and from ``floor`` on) ``pattern`` matches,
    read backwards; ``backwards`` is the text reversed."""
    size = len(backwards)
    found = pattern.match(backwards, size - end, size - floor)
    return found.end() - (size - end) if found else 0


def _past_escaped_amp(text: str, start: int, floor: int) -> int:
    """Where a name read backwards to ``start`` begins: past "u0026" where that is the rest
    of Go's \u0026 (a URL's &, written so in a JSON string), else ``start``."""
    if start > floor and text[start - 1] == "\\" and text.startswith("u0026", start):
        return start + 5
    return start


def _after_separator(text: str, start: int, floor: int) -> bool:
    """Whether a name beginning at ``start`` follows ? or & (or Go's \u0026): a URL's
    parameter wherever it stands."""
    return start > floor and (text[start - 1] in "?&" or text.endswith("\\u0026", floor, start))


def _trimmed(value: str, punctuation: str) -> str:
    """A bare value or URL without the sentence's punctuation right after it: one of
    ``punctuation``, or a bracket that closes one opened before ("(token=abc)")."""
    end = len(value)
    counts: dict[str, int] | None = None  # counted once: a value may end in many brackets
    while end:
        last = value[end - 1]
        if last in punctuation:
            end -= 1
            continue
        if last in _CLOSERS:
            if value.endswith(REDACTED, 0, end):
                break  # a mask's own bracket (a token masked first) closes nothing
            if counts is None:
                counts = {c: value.count(c) for c in "()[]{}"}
            if counts[_CLOSERS[last]] < counts[last]:
                counts[last] -= 1
                end -= 1
                continue
        break
    return value[:end]


def _known_tokens(text: str, signed: bool = False) -> str:
    """Text with every token known by its form (a JSON Web Token, a SendGrid, Stripe, Slack,
    GitHub, Mailgun, Brevo, Mailchimp, HubSpot, OpenAI, Anthropic, Hugging Face, Groq,
    Replicate, Perplexity, xAI, npm, GitLab, Shopify or Google API key, a Meta, Telegram,
    Twilio, Discord bot, Google OAuth, Airtable, Notion or Linear token, a webhook signing
    secret, a private key's PEM block, the secret part of a Slack, Teams or Discord webhook's
    URL or of a Telegram bot's) replaced, wherever it stands, and where ``signed`` the
    signature of an imgix, Cloudinary, Thumbor or imagor URL or an Akamai token and a
    one-time link's token (in its path or its query); the same string when it holds none."""
    # Every string of every free-form field passes here: the hints are tested unrolled, each
    # form's after the character its URLs cannot lack (a generator or a table of hints cost
    # more than the tests themselves).
    if "PRIVATE KEY" in text:
        text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    if "AIza" in text or (
        "/" in text
        and (
            "hooks.slack.com/" in text
            or "/webhooks/" in text
            or "telegram.org/" in text
            or ".office.com/webhook" in text
        )
    ):
        text = _SECRET_URL_PART.sub(_secret_url_part, text)
    if "%" in text and (
        "hooks.slack.com%" in text
        or "webhooks%" in text
        or "telegram.org%" in text
        or ".office.com%" in text
    ):
        text = _ENCODED_SECRET_URL_PART.sub(_secret_url_part, text)
    if "\\/" in text and (
        (":\\/\\/" in text and "@" in text)
        or "hooks.slack.com\\/" in text
        or "webhooks\\/" in text
        or "telegram.org\\/" in text
        or ".office.com\\/" in text
    ):
        text = _ESCAPED_SECRET_URL_PART.sub(_secret_url_part, text)
    if (
        "eyJ" in text
        or "SG." in text
        or "xox" in text
        or "EAA" in text
        or (
            "_" in text
            and (
                "k_live_" in text
                or "k_test_" in text
                or "gh" in text
                or "npm_" in text
                or "shp" in text
                or "whsec_" in text
                or "ntn_" in text
                or "secret_" in text
                or "lin_api_" in text
            )
        )
        or (
            "-" in text
            and (
                "key-" in text
                or "sk-" in text
                or "-us" in text
                or "sib-" in text
                or "pat-" in text
                or "xapp-" in text
                or "GOCSPX-" in text
            )
        )
        or ("." in text and ("ya29." in text or ("pat" in text and _AIRTABLE_HINT.search(text))))
        or "1//0" in text
        or (":" in text and (":A" in text or "AC" in text or "SK" in text))
    ):
        text = _KNOWN_TOKEN.sub(REDACTED, text)
    if (
        ("_" in text and ("hf_" in text or "gsk_" in text or "r8_" in text))
        or ("-" in text and ("pplx-" in text or "xai-" in text))
        or ("." in text and len(text) >= 55 and _DISCORD_HINT.search(text))
        or (
            "%" in text
            and (
                "3AA" in text
                or "3aA" in text
                or "2F0" in text
                or "2f0" in text
                or (("AC" in text or "SK" in text) and _TWILIO_ENCODED_HINT.search(text))
            )
        )
    ):
        text = _MORE_KNOWN_TOKEN.sub(REDACTED, text)
    if signed and (
        ("s=" in text and ("?s=" in text or "&s=" in text or ";s=" in text or "\\u0026s=" in text))
        or ("s\\u003" in text and ("?s\\u003" in text or "\\u0026s\\u003" in text))
        or "s--" in text
        or "~hmac=" in text
        or ("s%" in text and ("3Fs%" in text or "3fs%" in text or "26s%" in text or "3Bs%" in text or "3bs%" in text))
    ):
        text = _SIGNED_MEDIA.sub(_secret_url_part, text)
    if signed and ("=/" in text or "=\\/" in text or "3D%" in text or "3d%" in text):
        text = _IMAGE_SIGNATURE.sub(_secret_url_part, text)
    if signed and ("/" in text or "%2" in text):
        lowered = text.lower()
        if (
            "reset" in lowered
            or "passw" in lowered
            or "magic" in lowered
            or "log" in lowered
            or "sign" in lowered
            or "verif" in lowered
            or "confirm" in lowered
            or "activat" in lowered
            or "invit" in lowered
            or "unlock" in lowered
            or "token" in lowered
        ):
            text = _ONE_TIME_PATH.sub(_secret_url_part, text)
            if ("=" in text or "%3d" in lowered or "\\u003d" in lowered) and (
                "code" in lowered or "ticket" in lowered or "key" in lowered or "token" in lowered
            ):
                text = _one_time_params(text)
        elif "oob" in lowered and ("=" in text or "%3d" in lowered or "\\u003d" in lowered):
            text = _one_time_params(text)
    return text


def _decoded_name(name: str) -> str:
    """A parameter's name percent-decoded as often as it was encoded (a URL inside a URL
    inside a URL: up to four times); a name in brackets (``user[password]``, as Rails and PHP
    write a form's fields) is the one inside the last brackets."""
    for _ in range(4):
        if "%" not in name and "+" not in name:
            break
        name = unquote_plus(name)
    if name.endswith("]") and "[" in name:
        name = name[name.rindex("[") + 1 : -1].strip("\"'")
    return name


def _quote_around(text: str, at: int) -> str:
    """The quote (``"`` or ``'``) of a quoted text that ``text[at]`` lies inside on its line, or
    ``""``: quotes escaped by a backslash are not counted."""
    line = text[text.rfind("\n", 0, at) + 1 : at]
    for quote in "\"'":
        if (line.count(quote) - line.count("\\" + quote)) % 2:
            return quote
    return ""


def _credential_ends(follows: str) -> bool:
    """Whether a credential ends before ``follows`` (the next two characters): at white space
    or punctuation, but ``: ! ?`` only where no more of it follows ("Basic user:pw" is one)."""
    first = follows[0]
    if first.isspace():
        return True
    if first not in _CREDENTIAL_ENDS:
        return False
    if first in ":!?" and len(follows) > 1:
        return follows[1].isspace() or follows[1] in ",;)]}\"'<>"
    return True


def _cut_short(text: str, at: int, opener: str) -> tuple[str, str | None]:
    """A quoted value opened by ``opener`` at ``at`` and not closed on its line (a message cut
    short inside it, as providers and loggers cut them), which runs to the line's end, and
    what it becomes (None: it stays, empty or redacted already)."""
    value = _LINE_REST.match(text, at).group(0)  # type: ignore[union-attr]
    return value, None if value[len(opener) :] in ("", REDACTED) else opener + REDACTED


def _escaped_end(text: str, at: int, escape: str, quote: str) -> int:
    """Where a string opened by ``escape + quote`` right before ``at`` ends (past its closing
    quote), or -1 where it does not end on its line. Within it a quote of its own is escaped
    by more backslashes: ``\\"`` ends a string of JSON inside a JSON string, ``\\\\\"`` does not."""
    period = 2 * (len(escape) + 1)
    line_end = text.find("\n", at)
    if line_end < 0:
        line_end = len(text)
    i = at
    while (i := text.find(quote, i, line_end)) >= 0:
        run = 0
        while i - run > at and text[i - run - 1] == "\\":
            run += 1
        if run % period == len(escape):
            return i + 1
        i += 1
    return -1


def _brace_before(text: str, at: int, lo: int) -> int:
    """Where the object that ``text[at]`` lies in opens (its ``{``, objects nested before
    ``at`` skipped), from ``lo`` on; -1 where none does."""
    depth = 0
    while True:
        opening, closing = text.rfind("{", lo, at), text.rfind("}", lo, at)
        if opening < 0:
            return -1
        if closing > opening:
            depth += 1
            at = closing
        elif depth:
            depth -= 1
            at = opening
        else:
            return opening


def _brace_after(text: str, at: int, hi: int) -> int:
    """Where the object that ``text[at]`` lies in closes (its ``}``, objects nested after
    ``at`` skipped), before ``hi``; -1 where it does not."""
    depth = 0
    while True:
        opening, closing = text.find("{", at, hi), text.find("}", at, hi)
        if closing < 0:
            return -1
        if 0 <= opening < closing:
            depth += 1
            at = opening + 1
        elif depth:
            depth -= 1
            at = closing + 1
        else:
            return closing


def _secret_value(value: str, *, quoted_key: bool = False, plain_ok: bool = False) -> tuple[str | None, int]:
    """What a secret key's value becomes, and how long the part replaced is; None when it
    stays as it is (redacted already, empty, or one ordinary word when ``plain_ok``)."""
    if value == REDACTED:
        return None, len(value)
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        if value[1:-1] in ("", REDACTED):
            return None, len(value)
        return value[0] + REDACTED + value[0], len(value)
    if quoted_key:
        if value in _NOTHING:
            return None, len(value)
        # A JSON text stays JSON: the value becomes a string, as the key rule makes it.
        return '"' + REDACTED + '"', len(value)
    value = _trimmed(value, ".")
    if not value or (plain_ok and _PLAIN_WORD.fullmatch(value)):
        return None, len(value)
    return REDACTED, len(value)


class Redactor:
    """Replaces secrets by :data:`REDACTED`: the values under secret keys at any depth, and
    the secrets inside strings (see :meth:`redact_text` and :meth:`redact_url`)."""

    def __init__(self, keys: Iterable[str] = DEFAULT_SECRET_KEYS, extra: Iterable[str] = ()):
        if keys is DEFAULT_SECRET_KEYS and not extra:
            # Every append makes a default Redactor: fold the default keys once only.
            self.keys = _DEFAULT_FOLDED
            """The folded secret keys."""
        else:
            self.keys = frozenset(normalize_key(k) for k in (*keys, *extra) if k.strip())
        # The endings come with the default keys: keys given instead of them are the only ones.
        self._endings = _ENDINGS_FOLDED if keys is DEFAULT_SECRET_KEYS else ()
        # So do the signatures of signed URLs (a URL's parameters only: an object's
        # "signature" is a webhook's HMAC of its own body, no credential).
        self._signed_urls = bool(self._endings)
        if self.keys is _DEFAULT_FOLDED:
            self._tails = _DEFAULT_TAILS
        else:
            self._tails = _tails(self.keys | frozenset(self._endings))
        # Names met in text and URL parameters' names (utm_source, …) repeat: folding each
        # costs more than looking it up.
        self._names: dict[str, int] = {}  # _SECRET, _TAIL or 0 (see _name_kind)
        self._params: dict[str, bool] = {}
        # The last text an entry's naming key was looked for in, and where its braces are
        # read (it, or it with its strings' contents blanked: see _named_secret); one tuple,
        # so that threads sharing the redactor read a pair.
        self._braces_read: tuple[str | None, str] = (None, "")

    @classmethod
    def from_environment(cls, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> Redactor:
        """The default keys, ``extra`` and those FLOWLEDGER_REDACT_KEYS names (comma-separated):
        what every way in (append, the HTTP API, webhooks) redacts."""
        named = (os.environ if environ is None else environ).get("FLOWLEDGER_REDACT_KEYS", "")
        return cls(extra=[*extra, *(k for k in named.split(",") if k.strip())])

    def is_secret(self, key: Any) -> bool:
        """Whether a key's value is a secret: one of the keys, or, with the default keys, a key
        ending in one of :data:`SECRET_KEY_ENDINGS`."""
        return isinstance(key, str) and self._folded_secret(normalize_key(key))

    def is_secret_param(self, name: Any) -> bool:
        """Whether a URL parameter's value is a secret: its name, percent-decoded, a secret key
        (:meth:`is_secret`) or, with the default keys, a signed URL's signature
        (:data:`SIGNED_URL_PARAMS`)."""
        return isinstance(name, str) and self._secret_param(name)

    def _folded_secret(self, folded: str) -> bool:
        """Whether a folded key is a secret one: one of the keys, or ending in a secret word."""
        return folded in self.keys or folded.endswith(self._endings)

    def _name_kind(self, name: str) -> int:
        """What a name met in text folds to: a secret key (_SECRET), the end of one (_TAIL:
        "key" of "apikey", a key of several words' last word) or neither (0); remembered."""
        if len(self._names) >= 10_000:
            self._names.clear()
        folded = normalize_key(name)
        kind = self._names[name] = _SECRET if self._folded_secret(folded) else _TAIL if folded in self._tails else 0
        return kind

    def _secret_name(self, name: str) -> bool:
        """:meth:`is_secret` for a key met in text; remembered."""
        kind = self._names.get(name)
        return (kind if kind is not None else self._name_kind(name)) == _SECRET

    def _secret_param(self, name: str) -> bool:
        """:meth:`is_secret_param` for a name met in a URL; remembered."""
        known = self._params.get(name)
        if known is None:
            if len(self._params) >= 10_000:
                self._params.clear()
            folded = normalize_key(_decoded_name(name))
            known = self._params[name] = self._folded_secret(folded) or (
                self._signed_urls and (folded.endswith(_SIGNATURE_ENDINGS) or folded in _SIGNATURE_NAMES)
            )
        return known

    def _credential(self, text: str, value: str, start: int, end: int) -> str | None:
        """The credential after Bearer/Basic at ``start`` (``value``, its b64token, ends at
        ``end``), or None where what follows makes it no credential."""
        follows = text[end : end + 2]
        if value.endswith("=") and follows and (follows[0] in _B64_CHARS or follows[0] in "[\"'"):
            return None  # a pair ("Bearer token=abc", "Bearer realm=\"api\""): the key rule's
        if value.endswith("=") and follows[:1] in (" ", "\t") and self._secret_name(value.rstrip("=")):
            return None  # "Basic access_token= abc": the key rule's too
        if text.startswith(":" + REDACTED, end) and self._secret_name(value):
            return None  # a secret key's value masked already ("password:]x" masked first)
        if _KEY_FOLLOWS.match(text, end) and self._secret_name(value):
            # A secret key after the word ("Basic access_token: abc", "Bearer token = abc"):
            # its value is the secret, left to the key rule (taken for the credential, the
            # key hid the value).
            return None
        if follows and not _credential_ends(follows):
            # Characters a b64token does not hold: more of the credential ("abc%2Bdef").
            tail = _CREDENTIAL_TAIL.match(text, end)
            value = _trimmed(text[start : tail.end()], ".:!?")  # type: ignore[union-attr]
        return value

    def _escaped_pairs(self, text: str) -> str:
        """Text with the values of secret pairs whose ``=`` is written ``\\u003d`` (Gson's
        default) replaced: a secret key's (``password\\u003dabc``, with spaces around too), or a
        URL's secret parameter's after ``?``, ``&`` or ``\\u0026`` (``\\u0026X-Amz-Signature\\u003d
        abc``); a value is read as after ``=`` (quoted, its quotes escaped too: ``\\"abc\\"``).
        The same string when it holds none."""
        if "\\u003" not in text:
            return text
        pieces: list[str] = []
        done = 0
        backwards = ""
        size = len(text)
        for m in _ESCAPED_EQ.finditer(text):
            if m.start() < done:
                continue  # inside a value replaced already (base64's padding: \u003d\u003d)
            if not backwards:
                backwards = text[::-1]
            key_end = m.start()
            while key_end > done and text[key_end - 1] in " \t":
                key_end -= 1  # "password \u003d …"
            start = _past_escaped_amp(text, key_end - _run_before(_KEY_BACKWARDS, backwards, key_end, done), done)
            name = text[start:key_end]
            if not name or len(name) > _MAX_KEY:
                continue
            if not (self._secret_name(name) or (_after_separator(text, start, 0) and self._secret_param(name))):
                continue
            at = m.end()
            while at < size and text[at] in " \t":
                at += 1
            spaced = at > m.end()
            if text.startswith("=", at) or _ESCAPED_EQ.match(text, at):
                continue  # key==value, as in text: no pair
            if text.startswith(('\\"', "\\'"), at):
                # Quoted, its quotes escaped: the pair written inside a JSON string.
                found_escaped = self._escaped_value(text, at, "\\", text[at + 1])
                if found_escaped is None or found_escaped[2] is None:
                    continue
                value, new = found_escaped[1], found_escaped[2]
                length = len(value)
            else:
                found = _VALUE.match(text, at)
                if found is None:
                    if at >= size or text[at] not in "\"'":
                        continue
                    value, new = _cut_short(text, at, text[at])  # a quote not closed
                    length = len(value)
                else:
                    value = found.group(1)
                    if spaced and ("=" in value or _ESCAPED_EQ.search(value)):
                        continue  # "token\u003d user\u003dbob": an empty value, then a pair of its own
                    new, length = _secret_value(value, plain_ok=spaced)
                if new is None:
                    continue  # hidden already, or one ordinary word after a space
            pieces.append(text[done:at])
            pieces.append(new)
            done = at + length
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _encoded(self, text: str) -> str:
        """Text with the secrets of URLs percent-encoded inside it replaced: the value of each
        secret pair (``token%3Dabc``, ``api_key%253Dabc`` encoded twice) and the password of
        an encoded ``user:password@``; the same string when it holds none."""
        if "%" not in text:
            return text
        pieces: list[str] = []
        done = 0
        backwards = ""
        for m in _ENCODED_EQ.finditer(text):
            if m.start() < done:
                continue  # inside a value replaced already
            if not backwards:
                backwards = text[::-1]
            run = _run_before(_ENCODED_NAME_BACKWARDS, backwards, m.start(), done)
            name = text[m.start() - run : m.start()]
            last_sep = None
            for last_sep in _ENCODED_SEP.finditer(name):
                pass
            if last_sep is not None:
                name = name[last_sep.end() :]
            if not name or not self._secret_param(name):
                continue
            start = m.end()
            stop = _ENCODED_VALUE_END.search(text, start)
            end = stop.start() if stop else len(text)
            # A mask ends no value ("[" does): a token known by its form, masked first,
            # may stand inside one (an Akamai token's ~hmac), and the rest is the secret's too.
            while text.startswith(REDACTED, end):
                stop = _ENCODED_VALUE_END.search(text, end + len(REDACTED))
                end = stop.start() if stop else len(text)
            if end == start or text[start:end] == REDACTED:
                continue  # nothing to hide, or hidden already
            pieces.append(text[done:start])
            pieces.append(REDACTED)
            done = end
        if pieces:
            pieces.append(text[done:])
            text = "".join(pieces)
        if "40" not in text:
            return text
        pieces, done = [], 0
        for m in _ENCODED_AUTHORITY.finditer(text):
            if m.start() < done:
                continue
            stop = _ENCODED_AUTHORITY_END.search(text, m.end())
            end = stop.start() if stop else len(text)
            ats = list(_ENCODED_AT.finditer(text, m.end(), end))
            if not ats:
                continue
            colon = _ENCODED_COLON.search(text, m.end(), ats[-1].start())
            if colon is None or colon.end() == ats[-1].start() or text[colon.end() : ats[-1].start()] == REDACTED:
                continue  # a user and no password, or hidden already
            pieces.append(text[done : colon.end()])
            pieces.append(REDACTED)
            done = ats[-1].start()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _named_secret(self, text: str, key: str, key_start: int, quoted_key: bool) -> bool:
        """Whether the value under ``key`` (``value``, ``content``; it begins at
        ``key_start``) is a secret named by a key beside it: a quoted key within the same
        JSON object or repr's dict whose name is a secret key's (``{"name": "X-Api-Key",
        "value": …}``, that object quoted inside a JSON string too), or an attribute of the
        same markup tag naming a secret (``<add key="Password" value="…"/>``, ``<input
        name="user[password]" value="…">``, a signed upload form's ``X-Amz-Signature``), or
        a line of the same YAML entry (see :meth:`_yaml_named_secret`)."""
        if not quoted_key and text[key_start + len(key)] == ":":
            return self._yaml_named_secret(text, key_start)
        lo = max(0, key_start - _PAIR_REACH)
        hi = min(len(text), key_start + _PAIR_REACH)
        # A mask is a wall: what a value replaced held (a brace, a quote) is gone from a text
        # redacted once, and looked across, a second redaction would find what the first
        # did not.
        wall = text.rfind(REDACTED, lo, key_start)
        if wall >= 0:
            lo = wall + len(REDACTED)
        wall = text.find(REDACTED, key_start, hi)
        if wall >= 0:
            hi = wall
        if not quoted_key:
            tag = text.rfind("<", lo, key_start)
            if tag < 0 or not text[tag + 1 : tag + 2].isalpha() or text.find(">", tag, key_start) >= 0:
                return False
            close = text.find(">", key_start, hi)
            end = close if close >= 0 else hi
            return any(self._secret_param(m.group(2)) for m in _ATTR_NAME.finditer(text, tag, end))
        if key == "content":
            return False  # a markup attribute's name only
        # A brace inside a string of the object (a note's "missing }", a template's "{name")
        # is none of its: where one may be (braces not matched, or one where JSON has none),
        # the braces are read where the strings' contents are blanked, the strings read from
        # the text's start, past the walls (where they begin and end is the same before a
        # redaction and after it, a quoted value's mask keeping its quotes). Once for all the
        # entries of a text (a header list's).
        cached = self._braces_read
        if cached[0] is not text:
            odd = text.count("{") != text.count("}") or _ODD_BRACE.search(text) is not None
            cached = self._braces_read = (text, _QUOTED.sub(_blanked, text) if odd else text)
        return self._object_names_secret(text, cached[1], key_start, lo, hi)

    def _object_names_secret(self, text: str, braces: str, key_start: int, lo: int, hi: int) -> bool:
        """:meth:`_named_secret` for a quoted key: whether a key of the JSON object or repr's
        dict ``text[key_start]`` lies in names a secret, the object's braces read in
        ``braces`` (``text``, or it with its strings' contents blanked)."""
        opening = _brace_before(braces, key_start, lo)
        if opening < 0:
            return False
        closing = _brace_after(braces, key_start, hi)
        end = closing if closing >= 0 else hi
        for m in _PAIR_NAME.finditer(text, opening, end):
            # The object's own keys only, not those of an object nested in it.
            if braces.count("{", opening, m.start()) - braces.count("}", opening, m.start()) == 1 and self._secret_name(
                m.group(3)
            ):
                return True
        return False

    def _yaml_named_secret(self, text: str, key_start: int) -> bool:
        """Whether a YAML entry's value key at ``key_start`` (``value:``) has a naming key
        beside it whose name is a secret key's: a line of the same entry, its key in the same
        column (``- name: DB_PASSWORD`` above ``  value: …``, or below it); lines nested
        deeper between them are passed over."""
        line_start = text.rfind("\n", 0, key_start) + 1
        lead = text[line_start:key_start]
        if lead.strip(" \t-"):
            return False  # not a YAML entry's key
        column = len(lead)
        entry_start = "-" in lead
        start = line_start  # upwards to the entry's first line ("- ")
        for _ in range(_YAML_LINES):
            if entry_start or start == 0:
                break
            above = text.rfind("\n", 0, start - 1) + 1
            line = text[above : start - 1]
            start = above
            key_at = len(line) - len(line.lstrip(" \t-"))
            if key_at > column:
                continue
            if key_at < column:
                break
            if self._yaml_names_secret(line):
                return True
            entry_start = "-" in line[:key_at]
        end = text.find("\n", key_start)  # downwards to the next entry or the list's end
        for _ in range(_YAML_LINES):
            if end < 0:
                break
            below = text.find("\n", end + 1)
            line = text[end + 1 : below if below >= 0 else len(text)]
            end = below
            key_at = len(line) - len(line.lstrip(" \t"))
            if key_at > column:
                continue
            if key_at < column:
                break
            if self._yaml_names_secret(line):
                return True
        return False

    def _yaml_names_secret(self, line: str) -> bool:
        """Whether a YAML line is a naming key's (``name: DB_PASSWORD``) naming a secret."""
        found = _YAML_NAME.match(line)
        return found is not None and self._secret_name(found.group(2))

    def _longer_key(self, text: str, backwards: str, key_start: int, key_end: int, floor: int) -> int:
        """Where a secret key of several words that ends at ``key_end`` begins (``API key``,
        ``AWS secret access key``: up to four words, a space between each), its last word
        alone (from ``key_start``) being none; -1 where no such key ends there."""
        start = key_start
        for _ in range(3):
            # Each word read must end some secret key ("key" ends "apikey"; punctuation,
            # as in "… . :token=…", ends none): most words before a colon or "=" end none,
            # and are given up at once.
            if start - 1 <= floor or text[start - 1] != " " or not self._key_tail(text[start:key_end]):
                return -1
            run = _run_before(_KEY_BACKWARDS, backwards, start - 1, floor)
            if not run or run > _MAX_KEY:
                return -1
            start -= 1 + run
            if self._secret_name(text[start:key_end]):
                return start
        return -1

    def _key_tail(self, name: str) -> bool:
        """Whether a name met in text, folded, ends a secret key without being one; remembered."""
        kind = self._names.get(name)
        return (kind if kind is not None else self._name_kind(name)) == _TAIL

    def _xml_text(self, text: str, anchor: int, floor: int) -> tuple[int, int] | None:
        """Where the text of an XML element named by a secret key begins and ends (its tag
        ends at ``anchor``; white space around it and a CDATA section's markers are kept); it
        runs to the next ``<``, or to its line's end where none follows. None where the tag is
        no secret's, or its text is empty or redacted already."""
        opening = text.rfind("<", max(floor, anchor - 4 * _MAX_KEY), anchor)
        if opening < 0:
            return None
        tag = _XML_TAG.fullmatch(text, opening + 1, anchor)  # a self-closing one is none
        if tag is None or not self._secret_name(tag.group(1)):
            return None
        start = anchor + 1
        if text.startswith(_CDATA, start):
            start += len(_CDATA)
            end = text.find("]]>", start)
        else:
            end = text.find("<", start)
        if end < 0:
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
        value = text[start:end]
        core = value.strip()
        if not core or core == REDACTED:
            return None
        start += len(value) - len(value.lstrip())
        return start, start + len(core)

    @staticmethod
    def _escaped_value(text: str, at: int, escape: str, quote: str) -> tuple[int, str, str | None] | None:
        """Where the value after a key quoted inside a quoted text starts, the value, and what
        it becomes (None: it stays); None where there is no value."""
        opener = escape + quote
        if text.startswith(opener, at):
            end = _escaped_end(text, at + len(opener), escape, quote)
            if end < 0:
                return at, *_cut_short(text, at, opener)
            value = text[at:end]
            inner = value[len(opener) : -len(opener)]
            return at, value, None if inner in ("", REDACTED) else opener + REDACTED + opener
        found = _ESCAPED_KEY_VALUE.match(text, at)
        if found is None:
            return None
        value = found.group(0)
        if value == REDACTED or value in _NOTHING:
            return at, value, None
        return at, value, opener + REDACTED + opener  # quoted as the key is: JSON stays JSON

    def redact_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return the event with its free-form fields, its URL and its text fields redacted
        (the input is not changed)."""
        if event.keys().isdisjoint(_LOOKED_INTO):
            return event  # most events: nothing free-form to look into
        changed = None
        # Looked up by name, not by walking the event's items: an event in a large append
        # is cold in memory, and each key and value touched costs a cache miss.
        for name in _FIELDS:
            if name not in event:
                continue
            value = event[name]
            if isinstance(value, str):
                redacted = self.redact_url(value) if name in URL_FIELDS else self.redact_text(value)
            elif isinstance(value, (dict, list)):
                redacted = self.redact(value)
            else:
                continue
            if redacted is not value:
                if changed is None:
                    changed = dict(event)
                changed[name] = redacted
        return event if changed is None else changed

    def redact(self, value: Any) -> Any:
        """Return value with every secret replaced (under secret keys, and inside strings as
        :meth:`redact_text` finds them); the same object when it holds none."""
        if isinstance(value, dict):
            out: dict[Any, Any] | None = None
            keys, endings = self.keys, self._endings
            folded = [(k, v, normalize_key(k) if isinstance(k, str) else "") for k, v in value.items()]
            # Header lists often come as {"name": "Authorization", "value": "..."}, and as
            # {"Name": …, "Value": …} (Postmark's): the same rule for both.
            pair_secret = any(f in _HEADER_NAME and self.is_secret(v) for _, v, f in folded)
            for k, v, f in folded:
                # _folded_secret written out: this runs for every key of every free-form field.
                if (f in keys or f.endswith(endings) or (pair_secret and f in _HEADER_VALUE)) and v != REDACTED:
                    new = REDACTED if v is not None else None
                elif type(v) is str:
                    new = self.redact_text(v)
                else:
                    new = self.redact(v)
                if new is not v:
                    if out is None:
                        out = dict(value)
                    out[k] = new
            return value if out is None else out
        if isinstance(value, list):
            # Header lists also come as ["Authorization", "Bearer ..."] pairs.
            if len(value) == 2 and self.is_secret(value[0]) and value[1] is not None:
                return value if value[1] == REDACTED else [value[0], REDACTED]
            items = [self.redact(v) for v in value]
            if any(a is not b for a, b in zip(items, value)):
                return items
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        return value

    def redact_url(self, url: str) -> str:
        """Return a URL with its secrets replaced; the same string when it holds none.

        The password of ``user:password@`` is replaced (the user is kept), and so is the
        value of every query or fragment parameter (``#access_token=…``, as OAuth's implicit
        flow sends it) whose name, percent-decoded, is a secret key (``user[password]``'s
        name is the one in brackets) or a signed URL's signature (``X-Amz-Signature``,
        ``sig``, ``hmac``: :data:`SIGNED_URL_PARAMS`); so are those of a URL percent-encoded
        inside this one, tokens known by their form (see :meth:`redact_text`) and, with the
        default keys, an imgix or Cloudinary URL's signature (``s=`` and 32 hex digits, a
        path's ``s--…--``) and an Akamai token's (``~hmac=``). A parameter's name
        follows ``? & ; #`` (a ``?`` inside a value too, as a nested URL has) and its value
        runs to the next ``& ; #``. Everything else stays as it was, byte for byte: nothing is
        decoded or encoded again, the order is kept.
        """
        return self._url(self._encoded(_known_tokens(url, self._signed_urls)))

    def _url(self, url: str) -> str:
        """:meth:`redact_url` of a URL whose encoded URLs and known tokens are redacted already."""
        if "?" not in url and "#" not in url and "@" not in url:
            return url  # most links: nothing to look into
        out = url
        # user:password@ of the authority (after scheme:// up to the first / ? or #).
        scheme_end = url.find("://")
        if scheme_end >= 0 and "@" in url:
            start = scheme_end + 3
            stop = _AUTHORITY_END.search(url, start)
            end = stop.start() if stop else len(url)
            at = url.rfind("@", start, end)
            colon = url.find(":", start, at) if at >= 0 else -1
            if colon >= 0 and colon + 1 < at and url[colon + 1 : at] != REDACTED:
                out = url[: colon + 1] + REDACTED + url[at:]
        question, hash_ = out.find("?"), out.find("#")
        first = hash_ if question < 0 else question if hash_ < 0 else min(question, hash_)
        if first < 0:
            return out
        known = self._params
        for name in _URL_PARAM.findall(out, first):
            secret = known.get(name)
            if secret if secret is not None else self._secret_param(name):
                break
        else:
            return out  # the usual query (utm_source, …): no match objects made
        secret_param = self._secret_param
        pieces: list[str] = []
        done = 0
        for m in _URL_PARAM.finditer(out, first):
            start = m.end()
            if start < done or not secret_param(m.group(1)):
                continue  # not secret, or inside a value replaced already
            stop = _URL_VALUE_END.search(out, start)
            end = stop.start() if stop else len(out)
            if end == start or (out.startswith(REDACTED, start) and not out[start + len(REDACTED) : end].strip(")]}")):
                # Nothing to hide, or hidden already: a mask, or one with the brackets a
                # first redaction left as the sentence's after it (where the URL ended then
                # before a character masked since, as a "\/" in a value).
                continue
            pieces.append(out[done:start])
            pieces.append(REDACTED)
            done = end
        if not pieces:
            return out
        pieces.append(out[done:])
        return "".join(pieces)

    def redact_text(self, text: str) -> str:
        """Return free text with the secrets found in it replaced; the same string when it
        holds none. What is found (key names compare as :meth:`is_secret` does):

        - URLs with a scheme (``https://…``, ``postgresql://…``), as :meth:`redact_url` does;
          a URL with nothing of its own to hide is scanned as text (``…/cb;token=abc``);
        - ``Bearer <credential>`` and ``Basic <credential>``, in any case: the credential, with
          what a b64token does not hold glued to it (``abc%2Bdef``, ``user:pw``); a secret key
          right after the word is a key (``Basic access_token: abc``'s value), and ``word=``
          followed by a value is a pair (``Bearer realm="api"``);
        - a secret key's value after ``=`` (``token=abc``, ``…&client_secret=x``), after a
          colon and a space (``X-Api-Key: abc``, ``password: hunter2``), with spaces around
          either (``password = hunter2``, ``Api-Key : abc``), or after a quoted key and a
          colon or ``=`` (``"access_token":"abc"``, ``'secret': 1234``, as JSON or a repr
          shows a payload), that key's quotes escaped too (``\\"token\\": \\"abc\\"``, JSON
          inside a JSON string, at any depth). The scheme word of an Authorization header's
          value is kept (``Authorization: Bearer [REDACTED]``, ``Authorization: ApiKey
          [REDACTED]``: any ordinary or CamelCase word, hyphens between); a quoted value keeps
          its quotes, a bare one after a quoted key becomes ``"[REDACTED]"`` (JSON stays JSON);
          a Cookie header's value runs to its line's end, or to the end of a quoted text it
          is written in. Also after a colon with no space (``password:abc``), after ``:=``
          and ``=>`` (Ruby's and PHP's dumps: ``"password" => "abc"``, ``[token] => abc``),
          after a key in brackets (``user[password]=abc``), and after a key of up to four
          words whose last word alone is none (``API key: abc``);
        - an XML element's text where its tag names a secret key (``<password>abc</password>``,
          a namespace, attributes and CDATA too), to the next ``<`` or its line's end;
        - the value under ``value`` (``Value``; a markup tag's ``content``) where a key beside
          it names a secret: in the same JSON object or repr's dict (``{"name": "X-Api-Key",
          "value": "abc"}``, under ``name``, ``key`` or ``header``), the same markup tag
          (``<add key="Password" value="abc"/>``, ``<input name="csrf_token" value="abc">``,
          under ``name``, ``key``, ``id`` or ``type``: a parameter's name, as in a URL) or
          the same YAML entry (``- name: DB_PASSWORD`` and ``value: abc`` in one column);
        - a URL percent-encoded inside the text or a URL, once or more: its secret pairs'
          values (``token%3Dabc``) and its password (``https%3A%2F%2Fu%3Apw%40host``);
        - tokens known by their form, anywhere: JSON Web Tokens, SendGrid, Stripe, Slack,
          GitHub, Mailgun, Brevo, Mailchimp, HubSpot, OpenAI, Anthropic, npm, GitLab, Shopify
          and Google API keys, Meta's access tokens, Telegram bots' tokens, Twilio's tokens
          after their SIDs, webhook signing secrets, Google's OAuth tokens, Airtable, Notion
          and Linear tokens, private keys' PEM blocks, and the secret part
          of a Slack, Teams or Discord incoming webhook's URL or a Telegram bot's API URL;
          with the default keys, an imgix, Cloudinary, Thumbor or imagor URL's signature,
          an Akamai token's and a one-time link's token (a password reset's, in its path or
          its query) too.

        What is kept, so that messages keep their meaning: after ``key:``, ``key = `` and after
        Bearer/Basic, one ordinary word (letters, lower case after the first or all capitals:
        ``password: required``, ``Bearer token missing``); ``null``, ``true``, … after a quoted
        key; an object or array after a quoted key (not parsed); ``key==value``; after
        ``key= `` a pair of its own (``token= user=bob``: an empty value). A bare value
        ends at white space, a quote or ``& , ; < >``; a full stop or an unmatched closing
        bracket right after it stays. A time (``09:00``) or a port is no ``key:value``: its
        hours or host are no key.
        """
        if not _text_marked(text):
            return _known_tokens(text, self._signed_urls)
        # Found wherever they stand, before the anchors are: tokens known by their form, and
        # the pairs of URLs encoded inside others (no anchor of their own).
        text = self._escaped_pairs(self._encoded(_known_tokens(text, self._signed_urls)))
        parts: list[str] = []
        done = 0  # text[:done] is settled (in parts)
        # Where a key may begin: after the last value replaced, but within a URL replaced
        # ("https://u:pw@Authorization: x"), as when the URL was redacted already: else a
        # second redaction would find what the first did not.
        floor = 0
        pos = 0
        size = len(text)
        backwards = text[::-1]
        while (m := _ANCHOR.search(text, pos)) is not None:
            anchor = m.start()
            kind = m.lastgroup  # url, auth, xml, or None: a key's
            if kind == "url":
                start = anchor - _run_before(_SCHEME_BACKWARDS, backwards, anchor, done)
                while start < anchor and not ("a" <= text[start].lower() <= "z"):
                    start += 1  # a scheme begins with a letter
                body_end = _URL_BODY.match(text, anchor + 3).end()  # type: ignore[union-attr]
                if start == anchor:
                    pos = anchor + 3  # no scheme: no URL, but maybe pairs
                    continue
                url = _trimmed(text[start:body_end], ".,;:!?")
                new = self._url(url)  # its encoded URLs and known tokens: done above
                if new is not url:
                    parts.append(text[done:start])
                    parts.append(new)
                    done = start + len(url)
                    floor = start
                if new is url and REDACTED not in url:
                    # Nothing of the URL's own to hide: what is glued inside it
                    # ("https://x/p;token=…", a word and a key run together with it) is
                    # scanned as text. Not where a redaction was, or a second one would
                    # find what the first did not.
                    pos = anchor + 3
                else:
                    pos = start + len(url)
                continue
            if kind == "auth":
                pos = m.end()
                if anchor > 0 and (text[anchor - 1].isalnum() or text[anchor - 1] in "_-"):
                    continue  # inside a word
                cred = _CREDENTIAL.match(text, pos)
                if cred is None:
                    continue
                start = cred.start(1)
                value = self._credential(text, cred.group(1), start, cred.end())
                if value is None:
                    continue
                new, length = _secret_value(value, plain_ok=True)
                if new is not None:
                    parts.append(text[done:start])
                    parts.append(new)
                    done = floor = pos = start + length
                continue
            if kind == "xml":
                pos = anchor + 1
                xml = self._xml_text(text, anchor, floor)
                if xml is not None:
                    start, end = xml
                    parts.append(text[done:start])
                    parts.append(REDACTED)
                    done = floor = pos = end
                continue
            # key=value, key: value, "key": value, key => value, and with spaces around = or :
            key_end = anchor
            if text[anchor] == "=" and key_end > floor and text[key_end - 1] == ":":
                key_end -= 1  # "password := …"
            while key_end > floor and text[key_end - 1] in " \t":
                key_end -= 1  # "password = …", "Api-Key : …"
            quote = text[key_end - 1] if key_end > floor else ""
            escape = ""  # the backslashes before a quoted key's quotes: \"token\": \"…\"
            if quote == "'" or quote == '"':
                opening = text.rfind(quote, max(floor, key_end - 2 - _MAX_KEY), key_end - 1)
                key = text[opening + 1 : key_end - 1] if opening >= 0 else ""
                if key.endswith("\\"):
                    # A quoted text inside a quoted text (JSON inside a JSON string): the key
                    # counts where its opening quote is escaped alike.
                    bare = key.rstrip("\\")
                    if text[max(floor, opening - (len(key) - len(bare))) : opening] == key[len(bare) :]:
                        key, escape = bare, key[len(bare) :]
                key_start = opening
                quoted_key = True
            elif quote == "]":
                # A key in brackets: user[password]=…, PHP's print_r "[password] => …".
                opening = text.rfind("[", max(floor, key_end - 2 - _MAX_KEY), key_end - 1)
                key = text[opening + 1 : key_end - 1].strip("\"'") if opening >= 0 else ""
                if opening < 0 or "]" in key or "\n" in key or "\r" in key:
                    # A bracket closing no key of its own ("passwd]: …"; the "[" another
                    # pair's, or a mask's put there by an earlier pass): the name before it.
                    run = _run_before(_KEY_BACKWARDS, backwards, key_end - 1, floor)
                    key = text[key_end - 1 - run : key_end - 1] if run <= _MAX_KEY else ""
                    opening = key_end - 1 - run
                key_start = opening
                quoted_key = False
            else:
                key_start = _past_escaped_amp(text, key_end - _run_before(_KEY_BACKWARDS, backwards, key_end, floor), floor)
                key = text[key_start:key_end] if key_end - key_start <= _MAX_KEY else ""  # longer: no key
                quoted_key = False
                if key and key_start > floor and text[key_start - 1] == " " and not self._secret_name(key):
                    longer = self._longer_key(text, backwards, key_start, key_end, floor)
                    if longer >= 0:
                        key, key_start = text[longer:key_end], longer  # "API key: …"
            pos = value_start = anchor + 1
            if not key or not (
                self._secret_name(key)
                # After ? or & (or \u0026), a pair is a URL's parameter wherever it stands (a
                # URL with its slashes escaped, or no scheme): a signed URL's signature too.
                or (text[anchor] == "=" and _after_separator(text, key_start, floor) and self._secret_param(key))
                # A header list's entry written as text, a markup tag's attributes: a key
                # beside this one names the secret ({"name": "X-Api-Key", "value": …}).
                or (
                    key in _PAIR_VALUE_KEYS
                    and (quoted_key or text[anchor] in "=:")
                    and self._named_secret(text, key, key_start, quoted_key)
                )
            ):
                continue  # the value may hold secrets of its own: scanned on
            colon = text[anchor] == ":"
            if text.startswith("=>", anchor):
                # Ruby's and PHP's dumps ("password" => "…", :token => "…"): read as a colon.
                colon = True
                value_start += 1
            value_from = value_start
            while value_start < size and text[value_start] in " \t":
                value_start += 1
            spaced = value_start > value_from
            folded = normalize_key(key)
            if escape:
                found_escaped = self._escaped_value(text, value_start, escape, quote)
                if found_escaped is None:
                    continue
                start, value, new = found_escaped
                length = len(value)
            else:
                # An Authorization header's value is a scheme and a credential; elsewhere a
                # Bearer/Basic credential is found on its own (above), as anywhere in text.
                scheme = None
                plain_ok = colon or spaced
                if not quoted_key and folded.endswith("authorization"):
                    scheme = _SCHEME.match(text, value_start)
                    if scheme is not None:
                        plain_ok = False  # "Authorization: Bearer abc": abc is the credential
                    else:
                        scheme = _OTHER_SCHEME.match(text, value_start)
                        if scheme is not None and not all(
                            _SCHEME_WORD.fullmatch(word) for word in scheme.group(1).split("-")
                        ):
                            scheme = None
                value_pattern = _QUOTED_KEY_VALUE if quoted_key else _VALUE
                at = scheme.end() if scheme else value_start
                found = value_pattern.match(text, at)
                if found is None and text.startswith(('\\"', "\\'"), at):
                    # Quoted, its quotes escaped: a pair written inside a JSON string
                    # (token=\"abc\"), as an escaped key's value is read.
                    escaped_value = self._escaped_value(text, at, "\\", text[at + 1])
                    assert escaped_value is not None  # it starts with its quote
                    start, value, new = escaped_value
                    length = len(value)
                elif found is None:
                    if at >= size or text[at] not in "\"'":
                        continue
                    start = at
                    value, new = _cut_short(text, at, text[at])
                    length = len(value)
                else:
                    value, start = found.group(1), found.start(1)
                    if not colon and not quoted_key and spaced and "=" in value.rstrip("="):
                        continue  # "token= user=bob": an empty value, then a pair of its own
                    if not quoted_key and folded in ("cookie", "setcookie") and value != REDACTED and value[0] not in "\"'":
                        # A Cookie header holds several name=value pairs, all as secret, to
                        # its line's end or the end of a quoted text it is written in.
                        inside = _quote_around(text, key_start)
                        end = start
                        while end < size and text[end] not in "\r\n":
                            if text[end] == inside and text[end - 1] != "\\":
                                break
                            end += 1
                        value = text[start:end]
                    new, length = _secret_value(value, quoted_key=quoted_key, plain_ok=plain_ok)
            if new is not None:
                parts.append(text[done:start])
                parts.append(new)
                done = floor = pos = start + length
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def changed_places(before: Any, after: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Where a redacted copy ``after`` differs from ``before`` (a decoded JSON value): each
    place's path (keys dotted, or in brackets quoted as JSON where no plain name; list
    indexes in brackets), the value there before and after, as deep as both are alike in shape."""
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            named = (f"{path}.{key}" if path else key) if _PLAIN_KEY.fullmatch(key) else f"{path}[{json.dumps(key, ensure_ascii=False)}]"
            yield from changed_places(value, after.get(key), named)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (a, b) in enumerate(zip(before, after)):
            yield from changed_places(a, b, f"{path}[{i}]")
    else:
        yield path, before, after

