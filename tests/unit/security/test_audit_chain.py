"""The audit hash chain: canonical JSON, sealing, and verification that names the first bad event."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import pytest

from phantom_spire.security import (
    GENESIS_HASH,
    GENESIS_HEAD,
    REDACTED,
    AuditEvent,
    CanonicalJSONError,
    ChainedEvent,
    ChainHead,
    Outcome,
    canonical_json,
    chain_hash,
    seal_event,
    verify_chain,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
KEY = b"chain-key-kept-outside-the-database"


def make_chain(
    count: int, *, key: bytes | None = None, start: ChainHead = GENESIS_HEAD
) -> list[ChainedEvent]:
    chain: list[ChainedEvent] = []
    head = start
    for n in range(count):
        stored = seal_event(
            head,
            time=T0 + timedelta(seconds=n),
            actor=f"user-{n % 3}",
            action="task.cancel",
            target=f"task-{n}",
            outcome=Outcome.SUCCESS,
            key_id="0123456789abcdef",
            request_id=f"req-{n}",
            source_address="127.0.0.1",
            details={"reason": "test", "n": n, "nested": {"b": [1, 2.5, None], "a": "ü"}},
            chain_key=key,
        )
        chain.append(stored)
        head = stored.head
    return chain


def reseal(stored: ChainedEvent, **changes: Any) -> ChainedEvent:
    """The stored row with event fields changed but its stored hashes left as they were."""
    return replace(stored, event=replace(stored.event, **changes))


# --- canonical JSON --------------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_depth_without_whitespace() -> None:
    value = {"b": 1, "a": {"z": [{"y": 1, "x": 2}], "c": None}}
    assert canonical_json(value) == '{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}'


def test_canonical_json_keeps_non_ascii_as_utf8_text() -> None:
    assert canonical_json({"name": "Zürich ☃"}) == '{"name":"Zürich ☃"}'


def test_canonical_json_is_the_same_for_any_key_order() -> None:
    assert canonical_json({"a": 1, "b": {"c": 2, "d": 3}}) == canonical_json(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (1e20, "100000000000000000000"),
        (0.1, "0.1"),
        (2.5e-7, "2.5e-07"),
        (True, "true"),
        (None, "null"),
        ((1, "a"), '[1,"a"]'),
    ],
)
def test_canonical_json_writes_numbers_and_constants_stably(value: object, text: str) -> None:
    assert canonical_json(value) == text


def test_canonical_json_writes_a_str_enum_as_its_plain_value() -> None:
    class Colour(StrEnum):
        RED = "red"

    assert canonical_json({"c": Colour.RED}) == '{"c":"red"}'


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"x": float("nan")}, "nan at $.x"),
        ({"x": [0, float("inf")]}, "inf at $.x[1]"),
        ({"x": b"raw"}, "bytes b'raw' at $.x"),
        ({"x": {1, 2}}, "set {1, 2} at $.x"),
        ({"when": T0}, "datetime"),
        ({1: "one"}, "key 1 (int)"),
        ({"x": "\ud800"}, "'\\ud800' at $.x"),
    ],
)
def test_canonical_json_refuses_values_without_a_stable_form_naming_the_path(
    value: object, fragment: str
) -> None:
    with pytest.raises(CanonicalJSONError) as caught:
        canonical_json(value)
    assert fragment in str(caught.value)


# --- events ----------------------------------------------------------------------------------


def test_event_record_has_the_issue_fields_and_utc_time() -> None:
    event = make_chain(1)[0].event
    record = replace(
        event, time=datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    ).to_record()

    assert set(record) == {
        "id",
        "time",
        "actor",
        "key_id",
        "action",
        "target",
        "outcome",
        "request_id",
        "source_address",
        "details",
    }
    assert record["time"] == "2025-03-01T09:00:00.000000Z"


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    event = make_chain(1)[0].event
    shifted = replace(event, time=event.time.astimezone(timezone(timedelta(hours=-5))))
    assert chain_hash(GENESIS_HASH, event) == chain_hash(GENESIS_HASH, shifted)


def test_a_json_round_trip_of_the_record_keeps_the_hash() -> None:
    stored = make_chain(1)[0]
    read_back = AuditEvent.from_record(json.loads(json.dumps(stored.event.to_record())))
    assert chain_hash(stored.prev_hash, read_back) == stored.hash


def test_whole_floats_read_back_as_integers_keep_the_hash() -> None:
    # PostgreSQL jsonb returns 1e20 as 100000000000000000000, which json.loads makes an int.
    event = replace(make_chain(1)[0].event, details={"bytes": 1e20, "ratio": 0.25, "n": 3.0})
    read_back = replace(event, details={"bytes": 10**20, "ratio": 0.25, "n": 3})
    assert chain_hash(GENESIS_HASH, event) == chain_hash(GENESIS_HASH, read_back)


def test_event_details_are_copied_so_later_changes_do_not_reach_a_sealed_event() -> None:
    details: dict[str, Any] = {"files": ["a"]}
    stored = seal_event(
        GENESIS_HEAD,
        time=T0,
        actor="ana",
        action="x",
        target=None,
        outcome="success",
        details=details,
    )
    details["files"].append("b")
    assert verify_chain([stored]).ok


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        ({"id": 0}, ValueError, "id"),
        ({"id": True}, ValueError, "id"),
        ({"time": datetime(2025, 1, 1)}, ValueError, "timezone-aware"),
        ({"actor": ""}, ValueError, "actor"),
        ({"outcome": None}, ValueError, "outcome"),
        ({"target": 7}, TypeError, "target"),
        ({"details": ["not", "a", "mapping"]}, TypeError, "details"),
        ({"details": {"x": float("nan")}}, CanonicalJSONError, "details.x"),
    ],
)
def test_an_event_with_a_bad_field_is_refused_naming_it(
    changes: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    event = make_chain(1)[0].event
    with pytest.raises(error, match=fragment):
        replace(event, **changes)


def test_from_record_names_missing_fields_and_a_bad_time() -> None:
    record = make_chain(1)[0].event.to_record()
    with pytest.raises(ValueError, match=r"lacks \['actor'\]"):
        AuditEvent.from_record({k: v for k, v in record.items() if k != "actor"})
    with pytest.raises(ValueError, match=r"'2025-03-01 09:00'"):
        AuditEvent.from_record(record | {"time": "2025-03-01 09:00"})


def test_seal_event_numbers_links_and_redacts() -> None:
    first = seal_event(
        GENESIS_HEAD, time=T0, actor="ana", action="key.create", target="k1", outcome="success",
        details={"password": "hunter2", "note": "ok"},
    )  # fmt: skip
    second = seal_event(first.head, time=T0, actor="ana", action="x", target=None, outcome="denied")

    assert (first.event.id, second.event.id) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert first.event.details == {"password": REDACTED, "note": "ok"}
    assert first.hash == chain_hash(GENESIS_HASH, first.event)


def test_chain_hash_is_sha256_of_previous_hash_and_canonical_json() -> None:
    event = {"b": 2, "a": 1}
    expected = hashlib.sha256((GENESIS_HASH + '{"a":1,"b":2}').encode()).hexdigest()
    assert chain_hash(GENESIS_HASH, event) == expected


def test_chain_hash_refuses_a_malformed_previous_hash_and_an_empty_key() -> None:
    with pytest.raises(ValueError, match=r"prev_hash.*'ABC'"):
        chain_hash("ABC", {})
    with pytest.raises(ValueError, match=r"chain key"):
        chain_hash(GENESIS_HASH, {}, key=b"")


def test_a_keyed_hash_differs_from_the_plain_one() -> None:
    assert chain_hash(GENESIS_HASH, {"a": 1}, key=KEY) != chain_hash(GENESIS_HASH, {"a": 1})


# --- verification ----------------------------------------------------------------------------


def test_an_untouched_chain_verifies_and_reports_its_head() -> None:
    chain = make_chain(5)
    result = verify_chain(chain)

    assert result.ok and result.checked == 5 and result.reason == ""
    assert result.head == chain[-1].head and result.first_bad_id is None


def test_an_empty_chain_verifies() -> None:
    assert verify_chain([]).ok


def test_an_edited_field_is_reported_at_its_event() -> None:
    chain = make_chain(5)
    chain[2] = reseal(chain[2], outcome="denied")

    result = verify_chain(chain)
    assert not result.ok
    assert (result.first_bad_id, result.first_bad_index, result.checked) == (3, 2, 2)
    assert "event 3 does not match its stored hash" in result.reason


def test_an_edited_nested_detail_is_reported() -> None:
    chain = make_chain(3)
    chain[0] = reseal(chain[0], details={**chain[0].event.details, "nested": {"a": "ü", "b": [1]}})
    assert verify_chain(chain).first_bad_id == 1


def test_a_recomputed_hash_after_an_edit_breaks_the_next_link() -> None:
    chain = make_chain(4)
    edited = reseal(chain[1], actor="mallory")
    chain[1] = replace(edited, hash=chain_hash(edited.prev_hash, edited.event))

    result = verify_chain(chain)
    assert result.first_bad_id == 3
    assert "does not link to event 2" in result.reason


def test_a_deleted_row_is_reported_at_the_event_after_it() -> None:
    chain = make_chain(5)
    del chain[2]

    result = verify_chain(chain)
    assert (result.first_bad_id, result.first_bad_index) == (4, 2)
    assert "event(s) 3 were deleted" in result.reason


def test_several_deleted_rows_are_named_as_a_range() -> None:
    chain = make_chain(6)
    del chain[1:4]
    assert "event(s) 2..4 were deleted" in verify_chain(chain).reason


def test_a_deleted_first_row_is_reported() -> None:
    chain = make_chain(3)[1:]
    result = verify_chain(chain)
    assert (result.first_bad_id, result.first_bad_index) == (2, 0)


def test_a_deleted_last_row_is_found_only_with_a_checkpoint() -> None:
    chain = make_chain(4)
    checkpoint = chain[-1].head
    truncated = chain[:-1]

    assert verify_chain(truncated).ok
    result = verify_chain(truncated, checkpoint=checkpoint)
    assert not result.ok
    assert (result.first_bad_id, result.first_bad_index) == (4, 3)
    assert "events 4..4 were deleted" in result.reason


def test_a_swapped_pair_is_reported_at_the_first_of_the_two() -> None:
    chain = make_chain(5)
    chain[1], chain[2] = chain[2], chain[1]

    result = verify_chain(chain)
    assert (result.first_bad_id, result.first_bad_index) == (3, 1)
    assert "reordered" in result.reason


def test_swapped_contents_under_unchanged_ids_are_reported() -> None:
    chain = make_chain(4)
    one, two = chain[1], chain[2]
    chain[1] = replace(two, event=replace(two.event, id=2))
    chain[2] = replace(one, event=replace(one.event, id=3))
    assert verify_chain(chain).first_bad_index == 1


def test_a_forged_row_with_a_made_up_hash_is_reported_where_it_was_inserted() -> None:
    chain = make_chain(4)
    forged = replace(chain[1], event=replace(chain[1].event, actor="mallory"), hash="f" * 64)
    chain.insert(2, replace(forged, event=replace(forged.event, id=3), prev_hash=chain[1].hash))

    result = verify_chain(chain)
    assert (result.first_bad_id, result.first_bad_index) == (3, 2)


def test_a_well_formed_forged_row_without_a_key_is_reported_at_the_next_event() -> None:
    chain = make_chain(4)
    event = replace(chain[2].event, actor="mallory")
    chain.insert(2, ChainedEvent(event, chain[1].hash, chain_hash(chain[1].hash, event)))

    result = verify_chain(chain)
    assert (result.first_bad_id, result.first_bad_index) == (3, 3)
    assert "inserted before it" in result.reason


def test_a_forged_row_in_a_keyed_chain_is_reported_where_it_was_inserted() -> None:
    chain = make_chain(4, key=KEY)
    event = replace(chain[2].event, actor="mallory")
    chain.insert(2, ChainedEvent(event, chain[1].hash, chain_hash(chain[1].hash, event)))

    result = verify_chain(chain, key=KEY)
    assert (result.first_bad_id, result.first_bad_index) == (3, 2)
    assert "without the chain key" in result.reason


def test_a_well_formed_row_appended_without_a_key_verifies_but_not_with_one() -> None:
    # The limit of an unkeyed chain, stated as a test so that it stays known.
    plain, keyed = make_chain(3), make_chain(3, key=KEY)
    for chain in (plain, keyed):
        chain.append(
            seal_event(
                chain[-1].head, time=T0, actor="mallory", action="x", target=None, outcome="success"
            )
        )
    assert verify_chain(plain).ok
    assert verify_chain(keyed, key=KEY).first_bad_index == 3


def test_a_keyed_chain_fails_with_the_wrong_key_at_the_first_event() -> None:
    result = verify_chain(make_chain(3, key=KEY), key=b"another key")
    assert (result.first_bad_id, result.first_bad_index) == (1, 0)


def test_a_rewritten_tail_is_caught_by_a_checkpoint() -> None:
    chain = make_chain(4)
    checkpoint = chain[2].head
    rewritten = chain[:1]
    for stored in chain[1:]:
        event = replace(stored.event, actor="mallory")
        rewritten.append(
            ChainedEvent(event, rewritten[-1].hash, chain_hash(rewritten[-1].hash, event))
        )

    assert verify_chain(rewritten).ok
    result = verify_chain(rewritten, checkpoint=checkpoint)
    assert (result.first_bad_id, result.first_bad_index) == (3, 2)
    assert "checkpoint" in result.reason


def test_a_segment_verifies_from_an_archived_head() -> None:
    chain = make_chain(6)
    assert verify_chain(chain[3:], start=chain[2].head).ok
    assert verify_chain(chain[3:]).first_bad_index == 0


def test_a_checkpoint_before_the_start_is_refused() -> None:
    chain = make_chain(3)
    with pytest.raises(ValueError, match=r"checkpoint at id 1 lies before"):
        verify_chain(chain[2:], start=chain[1].head, checkpoint=chain[0].head)


def test_a_malformed_stored_hash_is_reported_not_raised() -> None:
    chain = make_chain(3)
    chain[1] = replace(chain[1], prev_hash="not-a-hash")
    assert verify_chain(chain).first_bad_index == 1
