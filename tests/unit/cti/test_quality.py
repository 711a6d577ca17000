"""The ingestion quality report's building blocks: tally round-trip, duplicates, flags."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phantom_spire.cti.feeds import read_feed
from phantom_spire.cti.quality import (
    IngestionTally,
    SeenKeys,
    Thresholds,
    anomalies,
    reason_key,
    volume_flag,
)

from .conftest import SAMPLE_FEEDS


def tally_of(name: str, *, future_after: datetime | None = None) -> IngestionTally:
    tally = IngestionTally()
    current = None
    for item in read_feed(SAMPLE_FEEDS / name):
        tally.add(item, new_record=item.position != current, future_after=future_after)
        current = item.position
    return tally


def test_tally_survives_its_own_serialised_form() -> None:
    tally = tally_of("quality_mixed.csv", future_after=datetime.now(UTC))
    tally.stored(new_by_type={"ipv4": 2}, existing=1, accepted=4, distinct=3, seen=0)
    tally.warning_list_hit(["a", "b"])
    tally.resumed_at.append(7)

    again = IngestionTally(tally.as_dict())

    assert again.as_dict() == tally.as_dict()


def test_tally_counts_a_multi_value_record_once() -> None:
    tally = tally_of("sample_stix21.json")  # one indicator holds two hashes
    assert tally.records["read"] == 10
    assert tally.accepted == 6


def test_future_times_are_counted_per_record_with_examples() -> None:
    tally = tally_of("quality_mixed.csv", future_after=datetime.now(UTC))
    assert tally.future_records == 1
    assert tally.future_examples[0]["field"] == "first_seen"


def test_no_future_check_without_a_reference_time() -> None:
    assert tally_of("quality_mixed.csv").future_records == 0


def test_duplicates_split_between_the_feed_and_the_store() -> None:
    tally = IngestionTally()
    # Batch of 5 values, 3 distinct, 1 of which this feed stored in an earlier batch, and 2
    # the store already held (that earlier one, plus one from another source).
    tally.stored(new_by_type={"ipv4": 1}, existing=2, accepted=5, distinct=3, seen=1)
    assert tally.within_feed == 3
    assert tally.against_store == 1


def test_seen_keys_tell_earlier_batches_apart() -> None:
    seen = SeenKeys()
    first, before = seen.split([("ipv4", "1.1.1.1"), ("ipv4", "1.1.1.1")])
    seen.remember(first)
    second, again = seen.split([("ipv4", "1.1.1.1"), ("domain", "a.com")])

    assert (len(first), before) == (1, 0)
    assert (len(second), again) == (2, 1)
    assert seen.exact


def test_seen_keys_stop_growing_at_their_limit_and_say_so() -> None:
    seen = SeenKeys(limit=3)
    hashes, _ = seen.split([("md5", str(i)) for i in range(5)])
    seen.remember(hashes)
    assert len(seen) == 3
    assert not seen.exact


def test_reason_key_drops_location_and_value() -> None:
    reason = "row 5 column 'ip': not a valid IPv4 address (value '300.1.2.3')"
    assert reason_key(reason) == "not a valid IPv4 address"


@pytest.mark.parametrize(
    ("accepted", "history", "flagged"),
    [
        (100, [], False),
        (100, [90, 110, 100], False),
        (301, [100], True),
        (300, [100], False),
        (33, [100], True),
        (34, [100], False),
        (0, [0, 0], False),
        (5, [0, 0, 1], True),
    ],
)
def test_volume_flag_compares_with_the_median_of_previous_runs(
    accepted: int, history: list[int], flagged: bool
) -> None:
    assert (volume_flag(accepted, history, 3.0) is not None) is flagged


def test_anomalies_of_a_clean_feed_are_empty() -> None:
    assert anomalies(tally_of("sample_misp_event.json"), Thresholds(), [9, 9]) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"max_reject_share": -0.1}, {"max_reject_share": 1.1}, {"volume_factor": 1.0},
     {"future_tolerance_seconds": -1}],
)  # fmt: skip
def test_thresholds_refuse_values_that_mean_nothing(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Thresholds(**kwargs)
