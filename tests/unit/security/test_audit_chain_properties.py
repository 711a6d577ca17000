"""Property tests: any single edit, deletion, insertion or swap is caught at the right event."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phantom_spire.security import (
    GENESIS_HEAD,
    AuditEvent,
    ChainedEvent,
    chain_hash,
    seal_event,
    verify_chain,
)

KEY = b"property-test-chain-key"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
texts = st.text(min_size=1, max_size=10)


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "time": draw(st.datetimes(timezones=st.just(UTC))),
        "actor": draw(texts),
        "action": draw(
            st.sampled_from(["task.create", "task.cancel", "auth.denied", "key.rotate"])
        ),
        "target": draw(st.none() | texts),
        "outcome": draw(st.sampled_from(["success", "denied", "failure"])),
        "key_id": draw(st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True)),
        "request_id": draw(st.none() | texts),
        "source_address": draw(st.sampled_from([None, "127.0.0.1", "::1"])),
        "details": draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
    }


def build(fields: list[dict[str, Any]], key: bytes | None) -> list[ChainedEvent]:
    chain: list[ChainedEvent] = []
    head = GENESIS_HEAD
    for item in fields:
        stored = seal_event(head, chain_key=key, **item)
        chain.append(stored)
        head = stored.head
    return chain


chains = st.lists(event_fields(), min_size=1, max_size=10)
keys = st.sampled_from([None, KEY])


def edited(event: AuditEvent, field: str) -> AuditEvent:
    """``event`` with ``field`` changed to a value whose canonical form surely differs."""
    if field == "id":
        return replace(event, id=event.id + 1)
    if field == "time":
        return replace(
            event, time=event.time.replace(microsecond=(event.time.microsecond + 1) % 10**6)
        )
    if field == "details":
        return replace(event, details={**event.details, "\x00tampered": True})
    changed: Any = (getattr(event, field) or "") + "x"
    return replace(event, **{field: changed})


EVENT_FIELDS = ["id", "time", "actor", "action", "target", "outcome", "key_id", "request_id"]
EVENT_FIELDS += ["source_address", "details"]


@settings(max_examples=100)
@given(chains, keys)
def test_an_untouched_chain_always_verifies(
    fields: list[dict[str, Any]], key: bytes | None
) -> None:
    chain = build(fields, key)
    result = verify_chain(chain, key=key, checkpoint=chain[-1].head)
    assert result.ok, result.reason


@settings(max_examples=100)
@given(chains, keys)
def test_a_json_round_trip_of_every_record_still_verifies(
    fields: list[dict[str, Any]], key: bytes | None
) -> None:
    chain = build(fields, key)
    read_back = [
        replace(s, event=AuditEvent.from_record(json.loads(json.dumps(s.event.to_record()))))
        for s in chain
    ]
    assert verify_chain(read_back, key=key).ok


@settings(max_examples=100)
@given(chains, keys, st.data())
def test_a_single_edited_field_is_reported_at_that_event(
    fields: list[dict[str, Any]], key: bytes | None, data: st.DataObject
) -> None:
    chain = build(fields, key)
    i = data.draw(st.integers(0, len(chain) - 1), label="index")
    field = data.draw(st.sampled_from([*EVENT_FIELDS, "hash", "prev_hash"]), label="field")
    if field == "hash":
        chain[i] = replace(chain[i], hash=chain_hash(chain[i].hash, {}))
    elif field == "prev_hash":
        chain[i] = replace(chain[i], prev_hash=chain_hash(chain[i].prev_hash, {}))
    else:
        chain[i] = replace(chain[i], event=edited(chain[i].event, field))

    result = verify_chain(chain, key=key)
    assert not result.ok
    assert result.first_bad_index == i
    assert result.first_bad_id == chain[i].event.id


@settings(max_examples=100)
@given(chains, keys, st.data())
def test_a_single_deleted_row_is_reported_where_it_was(
    fields: list[dict[str, Any]], key: bytes | None, data: st.DataObject
) -> None:
    chain = build(fields, key)
    checkpoint = chain[-1].head
    i = data.draw(st.integers(0, len(chain) - 1), label="index")
    deleted_id = chain[i].event.id
    del chain[i]

    result = verify_chain(chain, key=key, checkpoint=checkpoint)
    assert not result.ok
    assert result.first_bad_index == i
    # At the end of the chain no event follows: the missing id itself is named.
    assert result.first_bad_id == (chain[i].event.id if i < len(chain) else deleted_id)
    assert "deleted" in result.reason


@settings(max_examples=100)
@given(st.lists(event_fields(), min_size=2, max_size=10), keys, st.data())
def test_a_swapped_pair_is_reported_at_the_first_of_the_two(
    fields: list[dict[str, Any]], key: bytes | None, data: st.DataObject
) -> None:
    chain = build(fields, key)
    i = data.draw(st.integers(0, len(chain) - 2), label="index")
    chain[i], chain[i + 1] = chain[i + 1], chain[i]

    result = verify_chain(chain, key=key)
    assert not result.ok
    assert result.first_bad_index == i


@settings(max_examples=100)
@given(chains, event_fields(), st.data())
def test_a_forged_row_in_a_keyed_chain_is_reported_where_it_was_inserted(
    fields: list[dict[str, Any]], forged_fields: dict[str, Any], data: st.DataObject
) -> None:
    chain = build(fields, KEY)
    i = data.draw(st.integers(0, len(chain)), label="index")
    head = chain[i - 1].head if i else GENESIS_HEAD
    # The forger links correctly and numbers correctly, but does not hold the chain key.
    chain.insert(i, seal_event(head, chain_key=None, **forged_fields))

    result = verify_chain(chain, key=KEY)
    assert not result.ok
    assert result.first_bad_index == i


@settings(max_examples=100)
@given(chains, event_fields(), st.data())
def test_a_well_formed_forged_row_in_an_unkeyed_chain_is_reported_at_the_event_it_displaced(
    fields: list[dict[str, Any]], forged_fields: dict[str, Any], data: st.DataObject
) -> None:
    chain = build(fields, None)
    # Inserting after the last event cannot be detected without a key (see the unit tests).
    i = data.draw(st.integers(0, len(chain) - 1), label="index")
    head = chain[i - 1].head if i else GENESIS_HEAD
    chain.insert(i, seal_event(head, chain_key=None, **forged_fields))

    result = verify_chain(chain)
    assert not result.ok
    assert result.first_bad_index == i + 1
    assert "inserted" in result.reason


@settings(max_examples=100)
@given(chains, keys, event_fields(), st.data())
def test_a_forged_row_with_a_made_up_hash_is_reported_where_it_was_inserted(
    fields: list[dict[str, Any]],
    key: bytes | None,
    forged_fields: dict[str, Any],
    data: st.DataObject,
) -> None:
    chain = build(fields, key)
    i = data.draw(st.integers(0, len(chain)), label="index")
    head = chain[i - 1].head if i else GENESIS_HEAD
    forged = seal_event(head, chain_key=key, **forged_fields)
    made_up = data.draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), label="hash")
    chain.insert(i, replace(forged, hash=made_up))

    result = verify_chain(chain, key=key)
    assert not result.ok
    assert result.first_bad_index == i


def test_property_strategies_produce_events_at_any_instant() -> None:
    # Guard for the strategies above: an aware datetime far from now still seals.
    stored = seal_event(
        GENESIS_HEAD,
        time=datetime(1, 1, 1, tzinfo=UTC),
        actor="a",
        action="b",
        target=None,
        outcome="success",
    )
    assert verify_chain([stored]).ok
