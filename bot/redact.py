"""Masking of secrets in text that leaves the bot (Slack messages, logs, the audit trail).

Executors show what production systems return: logs, HTTP bodies, query text, error
messages. Any of it can carry a credential, so everything passes through `redact`
first. The patterns err on the side of masking: a false positive costs a `***` in a
message, a false negative leaks a secret into a channel's history.

`mask_sql_literals` serves a different purpose: query text from `pg_stat_activity`
contains customer data in its literals, which has no place in an incident channel.
"""

from __future__ import annotations

import re

MASK = "***"

# Words that make a key's value a secret: `DB_PASSWORD`, `client_secret`, `apiKey`,
# `X-Auth-Token`, `aws_secret_access_key` all contain one of them.
_SECRET_WORDS = (
    r"passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credentials?|auth[_-]?key|(?<=[_.-])pass\b"  # `DB_PASS`, `redis.pass`; not `bypass`
)
# A name containing one of them. Bounded, so that scanning a long token (a base64 blob
# in a log line) stays linear instead of backtracking quadratically.
_SECRET_NAME = r"[\w.-]{0,40}(?:" + _SECRET_WORDS + r")[\w.-]{0,40}"

_PEM = re.compile(
    r"(-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY)-----)"
    r".*?"
    r"(?:-----END (?P=label)-----|\Z)",
    re.DOTALL,
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# The credential after `Authorization:` whatever its scheme, and a bare `Bearer <token>`
# as it appears in curl commands and client logs.
_AUTHORIZATION = re.compile(
    r"(?i)(?P<head>\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?:(?:bearer|basic|token|digest|negotiate)[ \t]+)?)(?P<cred>[^\s\"',]+)"
)
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<cred>[A-Za-z0-9._~+/=-]{8,})")
# Tokens recognisable by their own shape, wherever they appear: Slack (`xoxb-`,
# rotating `xoxe.xoxp-`, app-level `xapp-`, and incoming-webhook paths), Stripe secret
# and restricted keys and webhook secrets, GitHub personal, OAuth, app and refresh
# tokens, AWS access key IDs. The recognisable prefix is kept, so a reader can tell
# what kind of credential was there.
_TOKENS = re.compile(
    r"\b(?P<prefix>xoxe\.xox[a-z]-|xox[a-z]-|xapp-)[A-Za-z0-9-]+"
    r"|\b(?P<hook>hooks\.slack\.com/(?:services|workflows|triggers)/)[\w/-]+"
    r"|\b(?P<stripe>(?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]{8,}"
    r"|\b(?P<github>gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}"
    r"|\b(?P<aws>AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}\b"
)
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s@/]+)(?P<at>@)"
)
# A key as the whole user part of a URL: Sentry DSNs (`https://<32 hex>@o1.ingest…`).
_URL_KEY = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[A-Za-z0-9_-]{20,}(?P<at>@)")
# `Cookie:` and `Set-Cookie:` headers: the whole value (every cookie in it), quoted or
# to the end of the line, quoted cookie values included.
_COOKIE = re.compile(
    r"(?i)(?P<head>(?<![\w-])(?:set-)?cookie[\"']?[ \t]*:[ \t]*)"
    r"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|(?:[^\r\n'\"]|\"[^\"\r\n]*\")+)"
)
# Command-line flags that take a secret: `--password value`, `--db-password=value`,
# `--token "value"`. The next word is the secret, whatever it looks like.
_FLAG = re.compile(
    r"(?i)(?P<head>(?<![^\s\"'])--?[\w-]{0,40}(?:" + _SECRET_WORDS + r")[\w-]{0,40}(?:[ \t]+|=))"
    r"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|\S+)"
)
# Environment assignments (`DB_PASS=…`, `export API_TOKEN=…`, `-e APP_SECRET=…`): an
# upper-case name, and a value that runs to the next whitespace, whatever it holds.
_ENV_ASSIGN = re.compile(
    r"(?P<key>(?<![\w.-])[A-Z][A-Z0-9_]{0,60}(?:PASS|PASSWD|PASSWORD|PWD|SECRET|TOKEN"
    r"|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?|AUTH_?KEY)(?:_[A-Z0-9_]{0,40})?)="
    r"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|\S+)"
)
# `key=value`, `key: value`, `"key": "value"`, `key='value'`; the key may be quoted
# and the value runs to the closing quote, or to whitespace / a delimiter when bare.
# The key starts only where a word starts, for the same reason as _SECRET_NAME's bound.
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>(?<![\w.\"'-])[\"']?" + _SECRET_NAME + r"[\"']?)"
    r"(?P<sep>[ \t]*[:=][ \t]*)"
    r"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s,;&\"'}\]]+)"
)

# Kubernetes-style env entries, where the secret-looking word is in the *name* and the
# secret in a separate `value`: `{"name": "DB_PASSWORD", "value": "x"}` (JSON or a
# Python repr) and `- name: DB_PASSWORD` / `  value: x` (YAML).
_ENV_ENTRY = re.compile(
    r"(?i)(?P<head>[\"']name[\"'][ \t]*:[ \t]*[\"']" + _SECRET_NAME + r"[\"']"
    r"[ \t]*,[ \t]*[\"']value[\"'][ \t]*:[ \t]*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*')"
    r"|(?P<yhead>\bname:[ \t]*[\"']?" + _SECRET_NAME + r"[\"']?[ \t]*\n"
    r"[ \t]*value:[ \t]*)(?P<yvalue>[^\n]+)"
)


def _masked(value: str) -> str:
    """MASK in the value's own quotes, if it had any."""
    quote = value[0] if value[:1] in ("'", '"') and len(value) > 1 and value[-1] == value[0] else ""
    return f"{quote}{MASK}{quote}"


def _mask_quoted(match: re.Match[str]) -> str:
    return match["head"] + _masked(match["value"])


def _mask_token(match: re.Match[str]) -> str:
    prefix = match["prefix"] or match["hook"] or match["stripe"] or match["github"] or match["aws"]
    return prefix + MASK


def _mask_env_entry(match: re.Match[str]) -> str:
    if match["head"]:
        quote = match["value"][0]
        return f"{match['head']}{quote}{MASK}{quote}"
    return match["yhead"] + MASK


def _mask_key_value(match: re.Match[str]) -> str:
    value = match["value"]
    if value == MASK or value.strip("\"'") == MASK:
        return match[0]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{match['sep']}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """Return `text` with every recognised secret replaced by `***`.

    Covered: PEM private key blocks (also when truncated), JWTs, `Authorization`
    credentials (Bearer/Basic/Token/Digest), `Cookie`/`Set-Cookie` headers, Slack,
    Stripe, GitHub and AWS tokens, Slack webhook paths, passwords in URLs and Sentry
    DSN keys, secret flags (`--password x`), secret-looking keys in env assignments,
    JSON, YAML and query strings, and Kubernetes env entries whose name looks secret.
    """
    text = _PEM.sub(lambda m: f"{m[1]}{MASK}-----END {m['label']}-----", text)
    text = _JWT.sub(MASK, text)
    text = _AUTHORIZATION.sub(lambda m: m["head"] + MASK, text)
    text = _BEARER.sub(lambda m: m["head"] + MASK, text)
    text = _COOKIE.sub(_mask_quoted, text)
    text = _TOKENS.sub(_mask_token, text)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], text)
    text = _URL_KEY.sub(lambda m: m["head"] + MASK + m["at"], text)
    text = _FLAG.sub(_mask_quoted, text)
    text = _ENV_ASSIGN.sub(lambda m: f"{m['key']}={_masked(m['value'])}", text)
    text = _ENV_ENTRY.sub(_mask_env_entry, text)
    return _KEY_VALUE.sub(_mask_key_value, text)


_SQL_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<quoted_ident>"(?:[^"]|"")*(?:"|\Z))
    | (?P<escape_string>[eE]'(?:[^'\\]|''|\\.)*(?:'|\Z))
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?(?:\$(?P=tag)?\$|\Z))
    | (?P<param>\$\d+)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    """,
    re.VERBOSE | re.DOTALL,
)


def _mask_sql_token(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind in ("escape_string", "string", "dollar"):
        return "'?'"
    if kind == "number":
        return "?"
    return match[0]


def mask_sql_literals(sql: str) -> str:
    """Replace SQL string literals with `'?'` and numbers with `?`, keeping identifiers,
    quoted identifiers, `$1` parameters and comments as they are.

    A tokenizer rather than one regex per literal kind, so `t1`, `"col 2"` and
    `'it''s'` are each read as one token; unterminated literals (query text that
    Postgres cut short) are masked to the end.
    """
    return _SQL_TOKEN.sub(_mask_sql_token, sql)
