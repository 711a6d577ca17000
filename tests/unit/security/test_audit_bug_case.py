"""The audit case BUG-AUD-01 of the shared bug list, read from ../shared at test time."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phantom_spire.security import (
    GENESIS_HASH,
    GENESIS_HEAD,
    AuditEvent,
    ChainedEvent,
    canonical_json,
    chain_hash,
    seal_event,
    verify_chain,
)

SHARED_DIR = Path(__file__).resolve().parents[3] / ".." / "shared"
CASES_FILE = SHARED_DIR / "cases" / "bugs" / "cases.json"
CASE_ID = "BUG-AUD-01"


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    """The case, skipped on a laptop without ../shared, failed in CI where it must exist."""
    if not CASES_FILE.is_file():
        reason = f"the shared bug cases are not at {CASES_FILE.resolve()}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide ../shared beside the repository")
        pytest.skip(f"{reason} (a clone without ../shared)")
    cases = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    matching = [c for c in cases if c.get("id") == CASE_ID]
    assert len(matching) == 1, (
        f"expected one case {CASE_ID!r} in {CASES_FILE}, found {len(matching)}"
    )
    found: dict[str, Any] = matching[0]
    return found


def test_canonical_json_is_the_rule_the_case_states(case: dict[str, Any]) -> None:
    for entry in case["input"]["entries"]:
        stated = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical_json(entry) == stated


def test_chain_hashes_of_the_case_entries_are_the_expected_ones(case: dict[str, Any]) -> None:
    first, second = case["input"]["entries"]

    h1 = chain_hash(GENESIS_HASH, first)
    h2 = chain_hash(h1, second)

    assert h1 == case["expected"]["h1"]
    assert h2 == case["expected"]["h2"]


def test_an_entry_read_back_with_reordered_keys_verifies(case: dict[str, Any]) -> None:
    assert case["expected"]["verify_with_reordered_read_back"] == "ok"
    reordered = case["input"]["read_back_entry_1_reordered"]
    assert list(reordered) != list(case["input"]["entries"][0]), "the case should reorder keys"

    assert chain_hash(GENESIS_HASH, reordered) == case["expected"]["h1"]


def test_a_tampered_nested_value_changes_the_first_hash_and_unlinks_the_rest(
    case: dict[str, Any],
) -> None:
    first, second = case["input"]["entries"]
    assert case["input"]["tamper"] == "set entries[0].detail.value = '198.51.100.8'"
    tampered = {**first, "detail": {**first["detail"], "value": "198.51.100.8"}}

    h1_tampered = chain_hash(GENESIS_HASH, tampered)

    assert h1_tampered == case["expected"]["h1_after_tamper"] != case["expected"]["h1"]
    assert chain_hash(h1_tampered, second) != case["expected"]["h2"]


def _as_chain(entries: list[dict[str, Any]]) -> list[ChainedEvent]:
    """The case's entries as audit events of our schema (``detail`` becomes ``details``)."""
    chain: list[ChainedEvent] = []
    head = GENESIS_HEAD
    for entry in entries:
        stored = seal_event(
            head,
            time=datetime(2025, 1, 1, tzinfo=UTC),
            actor=entry["actor"],
            action=entry["action"],
            target=entry["detail"]["value"],
            outcome="success",
            details=entry["detail"],
        )
        chain.append(stored)
        head = stored.head
    return chain


def test_verify_chain_accepts_the_reordered_read_back_and_fails_the_tamper_at_seq_1(
    case: dict[str, Any],
) -> None:
    entries = case["input"]["entries"]
    chain = _as_chain(entries)
    reordered_detail = case["input"]["read_back_entry_1_reordered"]["detail"]
    read_back = [
        ChainedEvent(
            AuditEvent.from_record(chain[0].event.to_record() | {"details": reordered_detail}),
            chain[0].prev_hash,
            chain[0].hash,
        ),
        chain[1],
    ]
    assert verify_chain(read_back).ok

    first = chain[0]
    tampered_detail = {**entries[0]["detail"], "value": "198.51.100.8"}
    tampered = AuditEvent.from_record(first.event.to_record() | {"details": tampered_detail})
    result = verify_chain([ChainedEvent(tampered, first.prev_hash, first.hash), chain[1]])

    assert not result.ok
    assert result.first_bad_id == entries[0]["seq"] == 1
