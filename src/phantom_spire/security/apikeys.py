"""API keys: generation, hashing, constant-time verification, expiry, revocation, rotation.

A key looks like ``spk_0123456789abcdef_<43 letters and digits>``: a prefix that secret
scanners can search for, a public key id (16 hex digits, used to find the stored record and
named in audit events), and a secret of about 256 bits. The full key is shown once, when it
is generated; the store keeps only :class:`ApiKeyRecord`, whose ``secret_hash`` cannot be
turned back into the key.

Why HMAC-SHA256 with a server pepper, and not bcrypt/scrypt/argon2:
    Slow password hashes exist to make guessing *low-entropy* passwords expensive. A
    256-bit random secret cannot be guessed whatever the hash costs, so a slow hash would only
    add tens of milliseconds to every API request (and a CPU-exhaustion lever for anyone
    sending bad keys). One HMAC-SHA256 is microseconds. The pepper (a server secret kept
    outside the database, e.g. ``SPIRE_API_KEY_PEPPER``) adds what a plain SHA-256 lacks:
    someone who can *write* the key table cannot mint a working key, because they cannot
    compute the HMAC. Plain SHA-256 (``pepper=None``) is supported for a single-user embedded
    install without a configured pepper; such records are refused once a pepper is
    configured, so a table writer cannot downgrade to them.

Stored hashes name their scheme (``"hmac-sha256$<hex>"`` or ``"sha256$<hex>"``) so a later
scheme can be introduced without guessing. Comparison uses :func:`hmac.compare_digest`.

All functions are pure over an injectable ``clock`` (a callable returning an aware
``datetime``); persisting records is the store's job.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from phantom_spire.security.errors import ApiKeyError, ApiKeyRejected

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PREFIX",
    "DEFAULT_TTL",
    "KEY_PATTERN",
    "MIN_PEPPER_BYTES",
    "ApiKeyRecord",
    "Clock",
    "IssuedKey",
    "KeyStatus",
    "Rotation",
    "generate_api_key",
    "generate_pepper",
    "hash_api_key",
    "key_id_of",
    "key_status",
    "revoke_api_key",
    "rotate_api_key",
    "system_clock",
    "verify_api_key",
]

Clock = Callable[[], datetime]

DEFAULT_PREFIX = "spk"
DEFAULT_TTL = timedelta(days=90)
DEFAULT_OVERLAP = timedelta(hours=24)
MIN_PEPPER_BYTES = 32

_SECRET_ALPHABET = string.ascii_letters + string.digits
# 43 characters of a 62-letter alphabet carry log2(62) * 43 ≈ 256 bits.
_SECRET_LENGTH = 43
_KEY_ID_BYTES = 8
_MAX_KEY_LENGTH = 128
_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{1,15}")

KEY_PATTERN = re.compile(
    r"(?P<prefix>[a-z][a-z0-9]{1,15})_(?P<key_id>[0-9a-f]{16})_"
    rf"(?P<secret>[0-9A-Za-z]{{{_SECRET_LENGTH}}})"
)
"""Matches a whole API key; also used by the audit redactor to find keys inside free text."""

_EXPECTED_SHAPE = f"'<prefix>_<16 hex digits>_<{_SECRET_LENGTH} letters or digits>'"
_HMAC_SCHEME = "hmac-sha256"
_PLAIN_SCHEME = "sha256"


def system_clock() -> datetime:
    """The current time in UTC; the default clock."""
    return datetime.now(UTC)


class KeyStatus(StrEnum):
    """Where a key is in its life, at a given instant."""

    ACTIVE = "active"
    ROTATING = "rotating"  # replaced by a newer key, still accepted until its overlap ends
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class ApiKeyRecord:
    """What the store keeps about a key: never the key itself.

    Attributes:
        key_id: Public id, the lookup key; safe to log and to show in audit events.
        user_id: The user the key acts as.
        secret_hash: ``"<scheme>$<hex digest>"`` of the whole key.
        created_at: When the key was generated.
        expires_at: When the key stops working; ``None`` for never.
        revoked_at: When the key was revoked; ``None`` while not revoked.
        replaced_by: Key id of the successor after a rotation.
        label: A human note ("CI pipeline"), never secret.
    """

    key_id: str
    user_id: str
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    replaced_by: str | None = None
    label: str = ""


@dataclass(frozen=True)
class IssuedKey:
    """A freshly generated key: show ``plaintext`` to the user once, store only ``record``.

    ``plaintext`` is left out of ``repr`` so that logging the object does not leak it.
    """

    plaintext: str = field(repr=False)
    record: ApiKeyRecord

    @property
    def key_id(self) -> str:
        """The public id of the new key."""
        return self.record.key_id


@dataclass(frozen=True)
class Rotation:
    """The result of :func:`rotate_api_key`: store both records, show ``issued`` once."""

    issued: IssuedKey
    retiring: ApiKeyRecord


def generate_pepper() -> bytes:
    """A fresh random server pepper of :data:`MIN_PEPPER_BYTES` bytes."""
    return secrets.token_bytes(MIN_PEPPER_BYTES)


def _now(clock: Clock) -> datetime:
    now = clock()
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the clock must return an aware datetime, got {now!r}")
    return now


def _check_pepper(pepper: bytes | None) -> None:
    if pepper is None:
        return
    if not isinstance(pepper, bytes) or len(pepper) < MIN_PEPPER_BYTES:
        shown = f"{len(pepper)} bytes" if isinstance(pepper, bytes) else type(pepper).__name__
        raise ValueError(
            f"the API key pepper must be at least {MIN_PEPPER_BYTES} random bytes, got {shown}"
        )


def _check_lifetime(name: str, value: timedelta | None) -> None:
    if value is not None and (not isinstance(value, timedelta) or value <= timedelta(0)):
        raise ValueError(f"{name} must be a positive timedelta or None, got {value!r}")


def key_id_of(presented: str) -> str:
    """The public key id inside a presented key, for looking up its record.

    Raises:
        ApiKeyRejected: the key is not shaped like one of ours (reason ``"malformed"``). The
            message gives the length only, never the key.
    """
    if not isinstance(presented, str):
        raise ApiKeyRejected(
            f"API key must be a string, got {type(presented).__name__}", reason="malformed"
        )
    match = KEY_PATTERN.fullmatch(presented) if len(presented) <= _MAX_KEY_LENGTH else None
    if match is None:
        raise ApiKeyRejected(
            f"API key is malformed: expected {_EXPECTED_SHAPE}, got a string of "
            f"{len(presented)} characters",
            reason="malformed",
        )
    return match["key_id"]


def hash_api_key(presented: str, *, pepper: bytes | None) -> str:
    """The stored form of ``presented``: ``"hmac-sha256$…"`` with a pepper, else ``"sha256$…"``.

    Raises:
        ValueError: the pepper is shorter than :data:`MIN_PEPPER_BYTES` or not bytes.
    """
    _check_pepper(pepper)
    data = presented.encode("utf-8")
    if pepper is None:
        return f"{_PLAIN_SCHEME}${hashlib.sha256(data).hexdigest()}"
    return f"{_HMAC_SCHEME}${hmac.new(pepper, data, hashlib.sha256).hexdigest()}"


def generate_api_key(
    user_id: str,
    *,
    pepper: bytes | None,
    ttl: timedelta | None = DEFAULT_TTL,
    label: str = "",
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = system_clock,
) -> IssuedKey:
    """Make a new key for ``user_id``.

    Args:
        user_id: The user the key acts as.
        pepper: The server pepper (see the module docstring); ``None`` for plain SHA-256.
        ttl: Lifetime from now; ``None`` for a key that never expires.
        label: A human note stored with the record.
        prefix: 2 to 16 lowercase letters or digits, starting with a letter.
        clock: Source of the current time.

    Raises:
        ValueError: an empty ``user_id``, a bad ``prefix``, ``ttl`` or pepper.
    """
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    if not isinstance(prefix, str) or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"API key prefix must be 2-16 lowercase letters or digits starting with a letter, "
            f"got {prefix!r}"
        )
    _check_lifetime("ttl", ttl)
    _check_pepper(pepper)
    now = _now(clock)

    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
    plaintext = f"{prefix}_{key_id}_{secret}"
    record = ApiKeyRecord(
        key_id=key_id,
        user_id=user_id,
        secret_hash=hash_api_key(plaintext, pepper=pepper),
        created_at=now,
        expires_at=None if ttl is None else now + ttl,
        label=label,
    )
    return IssuedKey(plaintext=plaintext, record=record)


def key_status(record: ApiKeyRecord, *, clock: Clock = system_clock) -> KeyStatus:
    """Whether ``record`` is active, in its rotation overlap, expired or revoked right now.

    Revocation wins over expiry; a key expires at ``expires_at`` exactly (not one tick later).
    """
    now = _now(clock)
    if record.revoked_at is not None and record.revoked_at <= now:
        return KeyStatus.REVOKED
    if record.expires_at is not None and now >= record.expires_at:
        return KeyStatus.EXPIRED
    if record.replaced_by is not None:
        return KeyStatus.ROTATING
    return KeyStatus.ACTIVE


def verify_api_key(
    presented: str,
    record: ApiKeyRecord,
    *,
    pepper: bytes | None,
    clock: Clock = system_clock,
) -> None:
    """Accept ``presented`` as the key stored in ``record``, or raise.

    The secret is compared first and in constant time, so a wrong secret is reported as a
    mismatch whatever the record's state: a guesser learns nothing about whether a key id is
    revoked or expired.

    Raises:
        ApiKeyRejected: reason ``"malformed"``, ``"mismatch"`` (wrong secret or a record for
            another key id), ``"revoked"`` or ``"expired"``. Answer every one with the same 401.
        ApiKeyError: ``record`` was hashed with a scheme this server will not accept (a
            ``sha256`` record while a pepper is configured, or the reverse). That is a
            configuration problem or a tampered table, not a bad request.
    """
    key_id = key_id_of(presented)
    expected = _expected_hash(presented, record, pepper=pepper)
    if key_id != record.key_id or not hmac.compare_digest(expected, record.secret_hash):
        raise ApiKeyRejected(
            f"API key {key_id!r} does not match the stored key {record.key_id!r}",
            reason="mismatch",
            key_id=key_id,
        )

    status = key_status(record, clock=clock)
    if status is KeyStatus.REVOKED:
        raise ApiKeyRejected(
            f"API key {key_id!r} was revoked at {_show(record.revoked_at)}",
            reason="revoked",
            key_id=key_id,
        )
    if status is KeyStatus.EXPIRED:
        raise ApiKeyRejected(
            f"API key {key_id!r} expired at {_show(record.expires_at)}",
            reason="expired",
            key_id=key_id,
        )


def _show(moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _expected_hash(presented: str, record: ApiKeyRecord, *, pepper: bytes | None) -> str:
    scheme, _, _ = record.secret_hash.partition("$")
    wanted = _PLAIN_SCHEME if pepper is None else _HMAC_SCHEME
    if scheme != wanted:
        raise ApiKeyError(
            f"API key {record.key_id!r} is stored with hash scheme {scheme!r}, but this server "
            f"accepts only {wanted!r} ({'no pepper' if pepper is None else 'a pepper'} is "
            "configured)"
        )
    return hash_api_key(presented, pepper=pepper)


def revoke_api_key(record: ApiKeyRecord, *, clock: Clock = system_clock) -> ApiKeyRecord:
    """``record`` revoked from now on; revoking twice keeps the first revocation time."""
    if record.revoked_at is not None:
        return record
    return replace(record, revoked_at=_now(clock))


def rotate_api_key(
    record: ApiKeyRecord,
    *,
    pepper: bytes | None,
    overlap: timedelta = DEFAULT_OVERLAP,
    ttl: timedelta | None = DEFAULT_TTL,
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = system_clock,
) -> Rotation:
    """Issue a successor for ``record``; both keys work until ``overlap`` has passed.

    The old key's expiry becomes ``now + overlap`` unless it already expires sooner, so a
    rotation never extends a key's life. ``overlap=timedelta(0)`` retires it at once.

    Raises:
        ApiKeyError: ``record`` is revoked, expired, or was already rotated (the message names
            its successor).
        ValueError: ``overlap`` is negative, or ``ttl`` or the pepper is invalid.
    """
    if not isinstance(overlap, timedelta) or overlap < timedelta(0):
        raise ValueError(f"overlap must be a timedelta of zero or more, got {overlap!r}")
    status = key_status(record, clock=clock)
    if status in (KeyStatus.REVOKED, KeyStatus.EXPIRED):
        raise ApiKeyError(f"cannot rotate API key {record.key_id!r}: it is {status.value}")
    if record.replaced_by is not None:
        raise ApiKeyError(
            f"cannot rotate API key {record.key_id!r}: it was already rotated to "
            f"{record.replaced_by!r}; rotate that key instead"
        )

    issued = generate_api_key(
        record.user_id, pepper=pepper, ttl=ttl, label=record.label, prefix=prefix, clock=clock
    )
    now = issued.record.created_at
    overlap_end = now + overlap
    expires_at = overlap_end if record.expires_at is None else min(record.expires_at, overlap_end)
    retiring = replace(record, expires_at=expires_at, replaced_by=issued.key_id)
    return Rotation(issued=issued, retiring=retiring)
