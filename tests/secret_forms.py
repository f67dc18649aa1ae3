"""Hypothesis strategies for secrets in the shapes they take in real log lines, and a
leak check. Shared by the redactor's property test and the end-to-end one.

Each form draws a fresh secret and returns (secret, text): `text` is how a program
logs it, `secret` the part that must never come out (a prefix that only names the kind
of credential, such as `xoxb-` or `sk_live_`, may).
"""

from __future__ import annotations

import base64
import string
from collections.abc import Callable

from hypothesis import assume
from hypothesis import strategies as st

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
# What a password may hold in the places below (no whitespace, quotes or backslash; no
# `@` or `/` inside a URL's userinfo; no `;` inside a cookie).
PASSWORD = ALNUM + "!#$%&()*+,-.:;<=>?@[]^_{|}~"
URL_PASSWORD = ALNUM + "!$&()*+,-.;=_~"
COOKIE = ALNUM + "-_.%+/="
# Surrounding text: words, punctuation and quotes, as log lines have.
FILLER = st.text(alphabet=ALNUM + " .,:;=/-_[]()'\"{}", max_size=40)
LEAK_WINDOW = 8  # this many consecutive characters of a secret count as a leak


def _secret(alphabet: str, size: int = 16) -> st.SearchStrategy[str]:
    """A secret as secrets are: varied characters, not `aaaaaaaa…`, which would also
    "leak" wherever the same run of characters occurs by chance."""
    # Drawn character by character: `st.text` also offers string constants it finds in
    # the code under test (`channel_actions_ts`), which occur in the output anyway.
    chars = st.lists(st.sampled_from(alphabet), min_size=size, max_size=size + 16)
    return chars.map("".join).filter(lambda secret: len(set(secret)) >= 6)


def _form(alphabet: str, render: Callable[[str], str], size: int = 16) -> st.SearchStrategy:
    return _secret(alphabet, size).map(lambda secret: (secret, render(secret)))


FORMS: dict[str, st.SearchStrategy[tuple[str, str]]] = {
    # Newly covered (issue 18)
    "DB_PASS": _form(PASSWORD, lambda s: f"DB_PASS={s}"),
    "*_PASSWORD": _form(PASSWORD, lambda s: f"export REDIS_PASSWORD={s}"),
    "*_SECRET": _form(PASSWORD, lambda s: f"-e APP_CLIENT_SECRET={s}"),
    "*_TOKEN": _form(PASSWORD, lambda s: f"GITLAB_TOKEN={s}"),
    "--password value": _form(PASSWORD, lambda s: f"pg_dump --password {s} --host db"),
    "--db-password=value": _form(PASSWORD, lambda s: f"migrate --db-password={s}"),
    "Set-Cookie": _form(COOKIE, lambda s: f"Set-Cookie: session={s}; Path=/; HttpOnly"),
    "Cookie": _form(COOKIE, lambda s: f"Cookie: theme=dark; sid={s}"),
    "Cookie in JSON": _form(COOKIE, lambda s: f'{{"Cookie": "sid={s}"}}'),
    "Stripe": _form(ALNUM, lambda s: f"stripe.api_key set to sk_live_{s}", 24),
    "Stripe restricted": _form(ALNUM, lambda s: f"key rk_test_{s}", 24),
    "GitHub classic": _form(ALNUM, lambda s: f"cloning with ghp_{s}", 36),
    "GitHub fine-grained": _form(ALNUM + "_", lambda s: f"auth github_pat_{s}", 40),
    "Slack bot": _form(ALNUM, lambda s: f"client xoxb-123456-789012-{s}", 24),
    "Slack rotating": _form(ALNUM, lambda s: f"refreshed xoxe.xoxp-1-{s}", 24),
    "Slack webhook": _form(ALNUM, lambda s: f"POST https://hooks.slack.com/services/T0/B0/{s}"),
    "AWS access key": _form(
        string.ascii_uppercase + string.digits, lambda s: f"AKIA{s[:16]} loaded", 16
    ).map(lambda pair: (pair[0][:16], pair[1])),
    "Sentry DSN": _form(HEX, lambda s: f"SENTRY_DSN https://{s}@o12.ingest.sentry.io/34", 32),
    # Covered before, kept covered
    "URL password": _form(URL_PASSWORD, lambda s: f"connecting to postgres://app:{s}@db/app"),
    "JSON password": _form(PASSWORD, lambda s: f'{{"user": "app", "password": "{s}"}}'),
    "api_key=": _form(ALNUM, lambda s: f"GET /v1?api_key={s}&page=2"),
    "Basic auth": _form(
        ALNUM, lambda s: f"Authorization: Basic {base64.b64encode(s.encode()).decode()}"
    ).map(lambda pair: (base64.b64encode(pair[0].encode()).decode(), pair[1])),
    "JWT": _form(ALNUM, lambda s: f"token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.{s}"),
    "x-api-key": _form(ALNUM, lambda s: f"x-api-key: {s}"),
    "PGPASSWORD": _form(PASSWORD, lambda s: f"PGPASSWORD={s} psql -h db"),
}


@st.composite
def log_line(draw: st.DrawFn, form: str) -> tuple[str, str]:
    """One log line with a secret of `form` planted among random text (which does not
    itself happen to hold a piece of the secret)."""
    secret, text = draw(FORMS[form])
    before, after = draw(FILLER), draw(FILLER)
    assume(not leaks(secret, f"{before} {text.replace(secret, ' ')} {after}"))
    return secret, f"{before} {text} {after}"


def unplanted(secrets: list[str], text: str) -> str:
    """`text` with the secrets taken out: what may hold a piece of one only by chance."""
    for secret in secrets:
        text = text.replace(secret, " ")
    return text


def leaks(secret: str, text: str) -> bool:
    """Whether any LEAK_WINDOW consecutive characters of `secret` appear in `text`."""
    size = min(LEAK_WINDOW, len(secret))
    return any(secret[i : i + size] in text for i in range(len(secret) - size + 1))
