"""Secrets never reach audit events: redaction by key name and inside free text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phantom_spire.security import (
    GENESIS_HEAD,
    REDACTED,
    canonical_json,
    generate_api_key,
    redact,
    seal_event,
)


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "db_password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refreshToken",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "proxy-authorization",
        "cookie",
        "Set-Cookie",
        "private_key",
        "credentials",
        "aws_secret_access_key",
        "session_id",
        "passphrase",
    ],
)
def test_values_under_secret_looking_keys_are_redacted(name: str) -> None:
    assert redact({name: "s3cr3t-value"}) == {name: REDACTED}


@pytest.mark.parametrize("name", ["key_id", "api_key_id", "token_id", "actor", "author", "keyword"])
def test_public_ids_and_ordinary_names_are_kept(name: str) -> None:
    assert redact({name: "visible"}) == {name: "visible"}


def test_redaction_reaches_every_depth_including_lists() -> None:
    details = {
        "request": {"headers": [{"Authorization": "Basic abc"}, {"Accept": "json"}]},
        "feeds": [{"name": "osint", "auth": {"password": "pw", "user": "bot"}}],
    }
    assert redact(details) == {
        "request": {"headers": [{"Authorization": REDACTED}, {"Accept": "json"}]},
        "feeds": [{"name": "osint", "auth": {"password": REDACTED, "user": "bot"}}],
    }


def test_a_whole_secret_subtree_is_replaced() -> None:
    assert redact({"credentials": {"user": "bot", "pw": "x"}}) == {"credentials": REDACTED}


def test_an_absent_secret_stays_visibly_absent() -> None:
    assert redact({"password": None}) == {"password": None}


def test_our_api_keys_are_redacted_inside_any_text() -> None:
    key = generate_api_key("ana", pepper=None).plaintext
    details = {"note": f"user pasted {key} into the task name", "list": [key]}

    redacted = redact(details)

    assert key not in canonical_json(redacted)
    assert key.split("_")[2] not in canonical_json(redacted)
    assert redacted["note"] == f"user pasted {REDACTED} into the task name"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc", f"Authorization: Bearer {REDACTED}"),
        ("basic dXNlcjpwYXNz", f"basic {REDACTED}"),
        ("https://bot:hunter2@feeds.example/x", f"https://bot:{REDACTED}@feeds.example/x"),
        (
            "https://feeds.example/v1?apikey=abc123&since=2025",
            f"https://feeds.example/v1?apikey={REDACTED}&since=2025",
        ),
        ("GET /x?access_token=t0k&x=1", f"GET /x?access_token={REDACTED}&x=1"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_credentials_inside_text_are_redacted_in_place(text: str, expected: str) -> None:
    assert redact({"url": text}) == {"url": expected}


def test_extra_markers_extend_the_secret_names() -> None:
    assert redact({"misp_authkey": "k"}, extra_markers=["auth-key"]) == {"misp_authkey": REDACTED}
    assert redact({"misp_authkey": "k"}) == {"misp_authkey": "k"}


def test_redact_does_not_change_its_input() -> None:
    details: dict[str, Any] = {"password": "pw", "nested": {"token": "t"}}
    redact(details)
    assert details == {"password": "pw", "nested": {"token": "t"}}


def test_sealed_audit_events_never_hold_the_secret() -> None:
    stored = seal_event(
        GENESIS_HEAD,
        time=datetime(2025, 1, 1, tzinfo=UTC),
        actor="ana",
        action="feed.update",
        target="feed-1",
        outcome="success",
        details={"config": {"url": "https://u:pw123@h/x", "api_key": "abc"}},
    )
    text = canonical_json(stored.event.to_record())
    assert "pw123" not in text and "abc" not in text


secret_names = st.sampled_from(["password", "token", "api_key", "Authorization", "client_secret"])
SECRET = "Zq9-very-secret-value"


@st.composite
def nested_with_secret(draw: st.DrawFn) -> Any:
    """A random JSON tree with one secret key somewhere inside."""
    value: Any = {draw(secret_names): SECRET}
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            value = [draw(st.integers()), value]
        else:
            value = {draw(st.sampled_from(["a", "meta", "cfg"])): value, "n": draw(st.integers())}
    return value


@given(nested_with_secret())
def test_a_secret_at_any_depth_is_gone_after_redaction(details: Any) -> None:
    assert SECRET in canonical_json(details)
    assert SECRET not in canonical_json(redact(details))
