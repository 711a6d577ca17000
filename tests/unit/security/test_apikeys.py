"""API keys: shown once, stored as a hash, verified in constant time, expire, revoke, rotate."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from phantom_spire.security import (
    KEY_PATTERN,
    ApiKeyError,
    ApiKeyRejected,
    IssuedKey,
    KeyStatus,
    generate_api_key,
    generate_pepper,
    hash_api_key,
    key_id_of,
    key_status,
    revoke_api_key,
    rotate_api_key,
    verify_api_key,
)

PEPPER = b"p" * 32
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """A settable clock: the tests move time instead of sleeping."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issued(clock: FakeClock) -> IssuedKey:
    return generate_api_key("ana", pepper=PEPPER, ttl=timedelta(days=30), clock=clock)


# --- generation and storage ----------------------------------------------------------------------


def test_generated_key_has_prefix_public_id_and_secret(issued: IssuedKey) -> None:
    match = KEY_PATTERN.fullmatch(issued.plaintext)
    assert match is not None
    assert match["prefix"] == "spk"
    assert match["key_id"] == issued.key_id == issued.record.key_id


def test_record_stores_a_peppered_hash_and_never_the_key(issued: IssuedKey) -> None:
    expected = hmac.new(PEPPER, issued.plaintext.encode(), hashlib.sha256).hexdigest()
    record = issued.record

    assert record.secret_hash == f"hmac-sha256${expected}"
    secret = issued.plaintext.rsplit("_", 1)[1]
    assert secret not in repr(record)
    assert all(secret not in str(value) for value in vars(record).values())


def test_issued_key_repr_does_not_show_the_plaintext(issued: IssuedKey) -> None:
    assert issued.plaintext not in repr(issued)
    assert issued.plaintext.rsplit("_", 1)[1] not in str(issued)


def test_record_carries_owner_times_and_label(clock: FakeClock) -> None:
    key = generate_api_key("ana", pepper=PEPPER, ttl=timedelta(hours=2), label="CI", clock=clock)
    assert key.record.user_id == "ana" and key.record.label == "CI"
    assert key.record.created_at == T0 and key.record.expires_at == T0 + timedelta(hours=2)


def test_two_generated_keys_differ_in_id_and_secret(clock: FakeClock) -> None:
    keys = {generate_api_key("ana", pepper=PEPPER, clock=clock).plaintext for _ in range(50)}
    assert len(keys) == 50
    assert len({key.split("_")[1] for key in keys}) == 50


def test_plain_sha256_is_used_without_a_pepper(clock: FakeClock) -> None:
    key = generate_api_key("ana", pepper=None, clock=clock)
    digest = hashlib.sha256(key.plaintext.encode()).hexdigest()
    assert key.record.secret_hash == f"sha256${digest}"
    verify_api_key(key.plaintext, key.record, pepper=None, clock=clock)


def test_a_custom_prefix_is_part_of_the_key(clock: FakeClock) -> None:
    key = generate_api_key("ana", pepper=PEPPER, prefix="acme", clock=clock)
    assert key.plaintext.startswith("acme_")
    verify_api_key(key.plaintext, key.record, pepper=PEPPER, clock=clock)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"prefix": "SPK"}, "'SPK'"),
        ({"prefix": "a"}, "'a'"),
        ({"prefix": "s_k"}, "'s_k'"),
        ({"ttl": timedelta(0)}, "ttl"),
        ({"ttl": timedelta(seconds=-1)}, "ttl"),
        ({"pepper": b"short"}, "5 bytes"),
        ({"pepper": "not-bytes" * 8}, "str"),
    ],
)
def test_generation_refuses_bad_settings_naming_them(
    clock: FakeClock, kwargs: dict[str, object], fragment: str
) -> None:
    arguments: dict[str, object] = {"pepper": PEPPER, "clock": clock} | kwargs
    with pytest.raises(ValueError, match=fragment):
        generate_api_key("ana", **arguments)  # type: ignore[arg-type]


def test_generation_refuses_an_empty_user() -> None:
    with pytest.raises(ValueError, match=r"user_id.*''"):
        generate_api_key("", pepper=PEPPER)


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match=r"aware datetime"):
        generate_api_key("ana", pepper=PEPPER, clock=lambda: datetime(2025, 1, 1))


def test_generate_pepper_is_long_enough_and_random() -> None:
    assert len(generate_pepper()) >= 32 and generate_pepper() != generate_pepper()


# --- verification ---------------------------------------------------------------------------------


def test_the_issued_key_verifies(issued: IssuedKey, clock: FakeClock) -> None:
    verify_api_key(issued.plaintext, issued.record, pepper=PEPPER, clock=clock)


def test_a_key_with_one_changed_secret_character_is_a_mismatch(
    issued: IssuedKey, clock: FakeClock
) -> None:
    last = issued.plaintext[-1]
    forged = issued.plaintext[:-1] + ("A" if last != "A" else "B")

    with pytest.raises(ApiKeyRejected) as caught:
        verify_api_key(forged, issued.record, pepper=PEPPER, clock=clock)
    assert caught.value.reason == "mismatch" and caught.value.key_id == issued.key_id


def test_another_keys_record_is_a_mismatch(issued: IssuedKey, clock: FakeClock) -> None:
    other = generate_api_key("bob", pepper=PEPPER, clock=clock)
    with pytest.raises(ApiKeyRejected, match=r"does not match") as caught:
        verify_api_key(other.plaintext, issued.record, pepper=PEPPER, clock=clock)
    assert caught.value.reason == "mismatch"


def test_the_wrong_pepper_is_a_mismatch(issued: IssuedKey, clock: FakeClock) -> None:
    with pytest.raises(ApiKeyRejected) as caught:
        verify_api_key(issued.plaintext, issued.record, pepper=b"q" * 32, clock=clock)
    assert caught.value.reason == "mismatch"


def test_verification_compares_hashes_in_constant_time(
    issued: IssuedKey, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_api_key(issued.plaintext, issued.record, pepper=PEPPER, clock=clock)
    assert (issued.record.secret_hash, issued.record.secret_hash) in calls


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "spk_0123456789abcdef_short",
        "spk_0123456789ABCDEF_" + "a" * 43,
        "Bearer spk_0123456789abcdef_" + "a" * 43,
        "spk_0123456789abcdef_" + "a" * 42 + "!",
        "x" * 10_000,
        "spk_0123456789abcdef_" + "a" * 42 + "é",
    ],
)
def test_a_malformed_key_is_rejected_without_echoing_it(presented: str) -> None:
    with pytest.raises(ApiKeyRejected) as caught:
        key_id_of(presented)
    assert caught.value.reason == "malformed" and caught.value.key_id is None
    assert f"{len(presented)} characters" in str(caught.value)
    if presented:
        assert presented not in str(caught.value)


def test_a_non_string_key_is_malformed() -> None:
    with pytest.raises(ApiKeyRejected, match=r"bytes"):
        key_id_of(b"spk_0123456789abcdef_" + b"a" * 43)  # type: ignore[arg-type]


def test_key_id_of_reads_the_public_id(issued: IssuedKey) -> None:
    assert key_id_of(issued.plaintext) == issued.key_id


def test_a_sha256_record_is_refused_when_a_pepper_is_configured(clock: FakeClock) -> None:
    # Someone who can write the key table could plant a plain SHA-256 of a key they chose.
    planted = generate_api_key("mallory", pepper=None, clock=clock)

    with pytest.raises(ApiKeyError, match=r"'sha256'.*'hmac-sha256'") as caught:
        verify_api_key(planted.plaintext, planted.record, pepper=PEPPER, clock=clock)
    assert not isinstance(caught.value, ApiKeyRejected)


def test_a_peppered_record_is_refused_when_no_pepper_is_configured(
    issued: IssuedKey, clock: FakeClock
) -> None:
    with pytest.raises(ApiKeyError, match=r"'hmac-sha256'.*no pepper"):
        verify_api_key(issued.plaintext, issued.record, pepper=None, clock=clock)


def test_hash_api_key_refuses_a_short_pepper() -> None:
    with pytest.raises(ValueError, match=r"at least 32"):
        hash_api_key("anything", pepper=b"x" * 31)


# --- expiry and revocation ---------------------------------------------------------------------


def test_a_key_works_until_its_expiry_and_not_at_it(issued: IssuedKey, clock: FakeClock) -> None:
    clock.now = T0 + timedelta(days=30) - timedelta(microseconds=1)
    verify_api_key(issued.plaintext, issued.record, pepper=PEPPER, clock=clock)

    clock.now = T0 + timedelta(days=30)
    with pytest.raises(ApiKeyRejected, match=r"expired at 2025-03-31T09:00:00\+00:00") as caught:
        verify_api_key(issued.plaintext, issued.record, pepper=PEPPER, clock=clock)
    assert caught.value.reason == "expired"


def test_a_key_without_ttl_does_not_expire(clock: FakeClock) -> None:
    key = generate_api_key("robot", pepper=PEPPER, ttl=None, clock=clock)
    clock.advance(timedelta(days=3650))
    verify_api_key(key.plaintext, key.record, pepper=PEPPER, clock=clock)
    assert key.record.expires_at is None


def test_expiry_is_compared_across_time_zones(issued: IssuedKey) -> None:
    cet = timezone(timedelta(hours=1))
    just_after = FakeClock(datetime(2025, 3, 31, 10, 0, 1, tzinfo=cet))
    with pytest.raises(ApiKeyRejected, match=r"expired"):
        verify_api_key(issued.plaintext, issued.record, pepper=PEPPER, clock=just_after)


def test_a_revoked_key_is_rejected(issued: IssuedKey, clock: FakeClock) -> None:
    clock.advance(timedelta(minutes=5))
    revoked = revoke_api_key(issued.record, clock=clock)

    with pytest.raises(ApiKeyRejected) as caught:
        verify_api_key(issued.plaintext, revoked, pepper=PEPPER, clock=clock)
    assert caught.value.reason == "revoked"
    assert key_status(revoked, clock=clock) is KeyStatus.REVOKED


def test_revoking_twice_keeps_the_first_time(issued: IssuedKey, clock: FakeClock) -> None:
    first = revoke_api_key(issued.record, clock=clock)
    clock.advance(timedelta(hours=1))
    assert revoke_api_key(first, clock=clock).revoked_at == T0


def test_a_wrong_secret_for_a_revoked_key_says_mismatch_not_revoked(
    issued: IssuedKey, clock: FakeClock
) -> None:
    # A guesser must not learn which key ids are revoked.
    revoked = revoke_api_key(issued.record, clock=clock)
    guess = issued.plaintext[:-3] + ("xyz" if not issued.plaintext.endswith("xyz") else "abc")
    with pytest.raises(ApiKeyRejected) as caught:
        verify_api_key(guess, revoked, pepper=PEPPER, clock=clock)
    assert caught.value.reason == "mismatch"


def test_revocation_wins_over_expiry(issued: IssuedKey, clock: FakeClock) -> None:
    revoked = revoke_api_key(issued.record, clock=clock)
    clock.advance(timedelta(days=365))
    assert key_status(revoked, clock=clock) is KeyStatus.REVOKED


# --- rotation -----------------------------------------------------------------------------------


def test_during_the_overlap_both_old_and_new_keys_work(issued: IssuedKey, clock: FakeClock) -> None:
    rotation = rotate_api_key(issued.record, pepper=PEPPER, overlap=timedelta(hours=1), clock=clock)
    clock.advance(timedelta(minutes=59))

    verify_api_key(issued.plaintext, rotation.retiring, pepper=PEPPER, clock=clock)
    verify_api_key(rotation.issued.plaintext, rotation.issued.record, pepper=PEPPER, clock=clock)
    assert key_status(rotation.retiring, clock=clock) is KeyStatus.ROTATING
    assert key_status(rotation.issued.record, clock=clock) is KeyStatus.ACTIVE


def test_after_the_overlap_only_the_new_key_works(issued: IssuedKey, clock: FakeClock) -> None:
    rotation = rotate_api_key(issued.record, pepper=PEPPER, overlap=timedelta(hours=1), clock=clock)
    clock.advance(timedelta(hours=1))

    with pytest.raises(ApiKeyRejected, match=r"expired"):
        verify_api_key(issued.plaintext, rotation.retiring, pepper=PEPPER, clock=clock)
    verify_api_key(rotation.issued.plaintext, rotation.issued.record, pepper=PEPPER, clock=clock)


def test_rotation_links_old_to_new_and_keeps_owner_and_label(clock: FakeClock) -> None:
    old = generate_api_key("ana", pepper=PEPPER, label="feed robot", clock=clock)
    rotation = rotate_api_key(old.record, pepper=PEPPER, clock=clock)

    assert rotation.retiring.replaced_by == rotation.issued.key_id != old.key_id
    assert rotation.issued.record.user_id == "ana"
    assert rotation.issued.record.label == "feed robot"
    assert rotation.retiring.secret_hash == old.record.secret_hash


def test_rotation_never_extends_the_old_keys_life(clock: FakeClock) -> None:
    old = generate_api_key("ana", pepper=PEPPER, ttl=timedelta(minutes=10), clock=clock)
    rotation = rotate_api_key(old.record, pepper=PEPPER, overlap=timedelta(days=1), clock=clock)
    assert rotation.retiring.expires_at == T0 + timedelta(minutes=10)


def test_a_zero_overlap_retires_the_old_key_at_once(issued: IssuedKey, clock: FakeClock) -> None:
    rotation = rotate_api_key(issued.record, pepper=PEPPER, overlap=timedelta(0), clock=clock)
    with pytest.raises(ApiKeyRejected, match=r"expired"):
        verify_api_key(issued.plaintext, rotation.retiring, pepper=PEPPER, clock=clock)


@pytest.mark.parametrize("state", ["revoked", "expired", "rotated"])
def test_a_dead_or_already_rotated_key_cannot_be_rotated(
    issued: IssuedKey, clock: FakeClock, state: str
) -> None:
    record = issued.record
    if state == "revoked":
        record = revoke_api_key(record, clock=clock)
    elif state == "expired":
        clock.advance(timedelta(days=31))
    else:
        record = replace(record, replaced_by="feedfacefeedface")

    with pytest.raises(ApiKeyError) as caught:
        rotate_api_key(record, pepper=PEPPER, clock=clock)
    assert repr(issued.key_id) in str(caught.value)
    if state == "rotated":
        assert "'feedfacefeedface'" in str(caught.value)


def test_a_negative_overlap_is_refused(issued: IssuedKey, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"overlap.*days=-1"):
        rotate_api_key(issued.record, pepper=PEPPER, overlap=timedelta(days=-1), clock=clock)
