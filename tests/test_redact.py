"""bot.redact: every secret shape is masked, ordinary text is left alone."""

from __future__ import annotations

import base64
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.executors.base import build_result
from bot.redact import mask_sql_literals, redact
from tests.secret_forms import FORMS, leaks, log_line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Slack tokens
        ("bot xoxb-123-456-AbCdEf ready", "bot xoxb-*** ready"),
        ("user xoxp-1-2-3-abc, app xapp-1-A01-123-ff", "user xoxp-***, app xapp-***"),
        ("legacy xoxa-2-abc and xoxr-9 and xoxs-1", "legacy xoxa-*** and xoxr-*** and xoxs-***"),
        # Authorization headers, any scheme; bare Bearer tokens
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "Basic ***"}'),
        ("curl -H 'Authorization: Token deadbeef42'", "curl -H 'Authorization: Token ***'"),
        ("retrying with bearer 0123456789abcdef", "retrying with bearer ***"),
        # passwords in URLs
        ("postgresql://app:s3cr3t@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("amqp://guest:p%40ss@mq/vhost", "amqp://guest:***@mq/vhost"),
        # key=value in env dumps, query strings
        ("DB_PASSWORD=hunter2 LOG_LEVEL=info", "DB_PASSWORD=*** LOG_LEVEL=info"),
        ("SLACK_SIGNING_SECRET=8f14e45fceea167a", "SLACK_SIGNING_SECRET=***"),
        ("GET /cb?code=1&access_token=abcd&state=2", "GET /cb?code=1&access_token=***&state=2"),
        ("api_key='k-123' apiKey=\"k-456\"", "api_key='***' apiKey=\"***\""),
        # JSON
        (
            '{"user": "bob", "password": "hu\\"nter2", "client_secret":"x1", "n": 1}',
            '{"user": "bob", "password": "***", "client_secret":"***", "n": 1}',
        ),
        ('{"token": 12345}', '{"token": ***}'),
        # YAML-ish
        ("db:\n  password: hunter2\n  user: app\n", "db:\n  password: ***\n  user: app\n"),
        ("secret: 'abc def'", "secret: '***'"),
        # Kubernetes env entries: the secret word is in the name, the secret in `value`
        ('{"name": "DB_PASSWORD", "value": "hunter2"}', '{"name": "DB_PASSWORD", "value": "***"}'),
        ("{'name': 'API_TOKEN', 'value': 'abc'}", "{'name': 'API_TOKEN', 'value': '***'}"),
        (
            "- name: DB_PASSWORD\n  value: hunter2\n- name: LOG_LEVEL\n  value: info",
            "- name: DB_PASSWORD\n  value: ***\n- name: LOG_LEVEL\n  value: info",
        ),
        # AWS access keys
        ("id AKIAIOSFODNN7EXAMPLE here", "id AKIA*** here"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key = ***"),
        # JWT
        (
            "cookie=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw now",
            "cookie=*** now",
        ),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_-x end", "jwt *** end"),
        # `*_PASS` and values with delimiters in env assignments
        ("DB_PASS=hunter2 ok", "DB_PASS=*** ok"),
        ("DB_PASSWORD=p@ss;w0rd,x&y next", "DB_PASSWORD=*** next"),
        ('export API_TOKEN="a b c"', 'export API_TOKEN="***"'),
        ("bypass=true passenger=3", "bypass=true passenger=3"),
        # flags
        ("pg_dump --password hunter2 --host db", "pg_dump --password *** --host db"),
        ("run --db-password='x y' -v", "run --db-password='***' -v"),
        # cookies
        ("Set-Cookie: sid=abc123; Path=/; HttpOnly", "Set-Cookie: ***"),
        ('{"cookie": "a=1; b=2", "n": 1}', '{"cookie": "***", "n": 1}'),
        # service token formats
        ("key sk_live_4eC39HqLyjWDarjtT1zdp7dc", "key sk_live_***"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***"),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a x", "ghp_*** x"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_***"),
        ("xoxe.xoxp-1-Mi0yLTE0 and xoxc-123-abc", "xoxe.xoxp-*** and xoxc-***"),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/***",
        ),
        (
            "dsn https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/2",
            "dsn https://***@o1.ingest.sentry.io/2",
        ),
    ],
)
def test_secret_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "100")), deadline=None)
@given(data=st.data())
def test_no_planted_secret_survives_redaction(data: st.DataObject) -> None:
    for form in FORMS:
        secret, line = data.draw(log_line(form), label=form)
        assert not leaks(secret, redact(line)), (form, line, redact(line))


def test_pem_private_key_blocks_are_masked_even_when_cut_short() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83Fz\n-----END RSA PRIVATE KEY-----"
    assert redact(f"key:\n{pem}\ndone") == (
        "key:\n-----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY-----\ndone"
    )
    cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert "b3Blbn" not in redact(cut)
    certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert redact(certificate) == certificate


@pytest.mark.parametrize(
    "text",
    [
        "3 pods: 2 Running, 1 CrashLoopBackOff (12 restarts)",
        "token expired for user bob; Basic auth disabled; Bearer token missing",
        "GET https://checkout.shop.svc:8080/health 200",
        "secretKeyRef:\n  name: firebreak",
        "SELECT * FROM orders WHERE id = ?",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_long_tokens_take_linear_time() -> None:
    # Executors redact up to 512 KiB of logs; a backtracking pattern would hang the bot.
    text = "token" * 4_000 + " " + base64.b64encode(bytes(range(256)) * 100).decode()
    text += ' "name": "' + "secret" * 4_000
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 1


def test_redaction_is_idempotent() -> None:
    text = "Authorization: Bearer x.y.z DB_PASSWORD=a https://u:p@h xoxb-1-a AKIAIOSFODNN7EXAMPLE"
    once = redact(text)
    assert redact(once) == once
    assert all(secret not in once for secret in ("x.y.z", "=a ", ":p@", "xoxb-1-a", "IOSFODNN"))


def test_executor_results_are_redacted_on_the_way_out() -> None:
    result = build_result(True, "using token=abc", "url postgres://u:pw@db/x", pid=1)
    assert (result.summary, result.output) == ("using token=***", "url postgres://u:***@db/x")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT * FROM orders WHERE email = 'a@b.com' AND total > 42.50",
            "SELECT * FROM orders WHERE email = '?' AND total > ?",
        ),
        (
            "UPDATE t1 SET note = 'it''s' WHERE id IN (1, 2, 3)",
            "UPDATE t1 SET note = '?' WHERE id IN (?, ?, ?)",
        ),
        ("SELECT E'a\\'b', 1e-3, .5", "SELECT '?', ?, ?"),
        (
            'SELECT "col 2", x2 FROM "Table 9" WHERE a = $1',
            'SELECT "col 2", x2 FROM "Table 9" WHERE a = $1',
        ),
        ("SELECT $$secret$$, $fn$ also $fn$", "SELECT '?', '?'"),
        ("SELECT 1 -- don't mask comments\n, 'x'", "SELECT ? -- don't mask comments\n, '?'"),
        ("INSERT INTO cards VALUES ('4111 1111", "INSERT INTO cards VALUES ('?'"),
    ],
)
def test_sql_literals_are_masked_identifiers_kept(sql: str, expected: str) -> None:
    assert mask_sql_literals(sql) == expected
