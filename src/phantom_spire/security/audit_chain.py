"""A tamper-evident hash chain for audit events, canonical JSON, and secret redaction.

Each stored event carries the hash of the event before it and its own hash::

    hash_i = SHA-256( hash_{i-1} + canonical_json(event_i) )      hash_0 = "0" * 64

(text concatenation, UTF-8; with a chain key, HMAC-SHA256 keyed by it). Event ids are the
chain position: the appender gives each event the previous id plus one, inside the same
transaction that reads the previous hash. A database sequence would not do, because it leaves
gaps on rollback and a gap is exactly what a deleted row looks like.

:func:`verify_chain` names the first event that fails and why. What it can and cannot see:

* an edited field, a deleted row, a swapped pair, and a forged row whose hash is wrong are
  each reported at the event where they are;
* without a chain key anyone who can write the table can compute hashes, so a well-formed
  forged row inserted before event *n* is reported at event *n* (its id repeats), and a
  well-formed row appended at the end, or a rewritten tail, verifies. Give the appender and
  the verifier a ``key`` (kept outside the database) to make forged rows fail their own hash,
  and keep a :class:`ChainHead` checkpoint outside the database to detect a truncated tail.

Canonical JSON is written by hand (a few lines over :func:`json.dumps`) because the stored
form must hash identically after a round trip through SQLite JSON text or PostgreSQL
``jsonb``: keys sorted at every depth, no whitespace, UTF-8 (no ``\\u`` escapes), ``null``
kept, and floats that are whole numbers written as integers (``jsonb`` turns ``1e20`` into
``100000000000000000000``, which reads back as an int). NaN and infinities are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from phantom_spire.security.apikeys import KEY_PATTERN
from phantom_spire.security.errors import CanonicalJSONError

__all__ = [
    "GENESIS_HASH",
    "GENESIS_HEAD",
    "REDACTED",
    "AuditEvent",
    "ChainHead",
    "ChainedEvent",
    "Outcome",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
    "redact",
    "seal_event",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
REDACTED = "[REDACTED]"

_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
_TIME_SHAPE = "'YYYY-MM-DDTHH:MM:SS.ffffffZ'"


# --- canonical JSON ---------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text: the exact input of the chain hash.

    Raises:
        CanonicalJSONError: ``value`` holds something JSON cannot carry stably (NaN, an
            infinity, bytes, a datetime, a set, a non-string key, an unpaired surrogate);
            the message gives the path to it, e.g. ``details.files[2]``.
    """
    return json.dumps(
        _to_json_value(value, "$"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _to_json_value(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _plain_string(value, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float | Decimal):
        return _number(value, path)
    if isinstance(value, Mapping):
        return _mapping(value, path)
    if isinstance(value, list | tuple):
        return [_to_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise CanonicalJSONError(
        f"cannot hash {type(value).__name__} {value!r} at {path}: expected a JSON value "
        "(str, int, finite float, bool, None, list, or dict with string keys)"
    )


def _plain_string(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJSONError(
            f"cannot hash string {value!r} at {path}: it is not valid UTF-8 ({exc.reason})"
        ) from exc
    # A str subclass (e.g. a StrEnum member) must hash as its plain text.
    return str.__str__(value)


def _number(value: float | Decimal, path: str) -> int | float:
    if not math.isfinite(value):
        raise CanonicalJSONError(
            f"cannot hash {value!r} at {path}: expected a finite number (JSON has no NaN or "
            "infinity)"
        )
    if value == int(value):
        return int(value)
    return float(value)


def _mapping(value: Mapping[Any, Any], path: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise CanonicalJSONError(
                f"cannot hash key {key!r} ({type(key).__name__}) at {path}: expected string "
                "keys, because JSON turns other keys into strings and two could collide"
            )
        result[_plain_string(key, path)] = _to_json_value(item, f"{path}.{key}")
    return result


# --- events -----------------------------------------------------------------------------------


class Outcome(StrEnum):
    """The usual outcomes of an audited action."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


def _optional_text(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"AuditEvent.{name} must be a string or None, got {value!r}")


def _required_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"AuditEvent.{name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True)
class AuditEvent:
    """One audited action, as hashed. Build new ones with :func:`seal_event`.

    Attributes:
        id: Chain position, 1 for the first event, previous id plus one after that.
        time: When it happened (timezone-aware; hashed in UTC to the microsecond).
        actor: User id of the principal, or ``"anonymous"`` for an unauthenticated request.
        action: What was attempted, e.g. ``"task.cancel"``.
        target: What it was attempted on, e.g. a task id; ``None`` for none.
        outcome: Usually an :class:`Outcome` value.
        key_id: Public id of the API key used; never the key.
        request_id: Correlates with the access log.
        source_address: Client address as seen by the API.
        details: Extra JSON data, already passed through :func:`redact`.
    """

    id: int
    time: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    key_id: str | None = None
    request_id: str | None = None
    source_address: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool) or self.id < 1:
            raise ValueError(f"AuditEvent.id must be an integer of 1 or more, got {self.id!r}")
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise ValueError(
                f"AuditEvent.time must be a timezone-aware datetime, got {self.time!r}"
            )
        for name in ("actor", "action", "outcome"):
            _required_text(name, getattr(self, name))
        for name in ("target", "key_id", "request_id", "source_address"):
            _optional_text(name, getattr(self, name))
        if not isinstance(self.details, Mapping):
            raise TypeError(f"AuditEvent.details must be a mapping, got {self.details!r}")
        # A deep, JSON-normalised copy: later changes to the caller's dict cannot alter a
        # sealed event, and an unhashable value fails here rather than at verification.
        object.__setattr__(self, "details", _to_json_value(self.details, "details"))

    def to_record(self) -> dict[str, Any]:
        """The event as a JSON-ready dict: exactly what :func:`chain_hash` hashes."""
        return {
            "id": self.id,
            "time": _format_time(self.time),
            "actor": self.actor,
            "key_id": self.key_id,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "source_address": self.source_address,
            "details": self.details,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AuditEvent:
        """Read back a dict made by :meth:`to_record` (``time`` may be text or a datetime).

        Raises:
            ValueError: a field is missing, or ``time`` is not in the stored format.
        """
        missing = sorted(_RECORD_FIELDS - record.keys())
        if missing:
            raise ValueError(f"audit record lacks {missing!r}; got fields {sorted(record)!r}")
        time = record["time"]
        if isinstance(time, str):
            time = _parse_time(time)
        return cls(**{name: record[name] for name in _RECORD_FIELDS} | {"time": time})


def _format_time(value: datetime) -> str:
    # Not strftime: "%Y" does not zero-pad years before 1000 on every platform.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    # Only the exact stored form is accepted: another spelling of the same instant would
    # verify here but means the row was not written by this code.
    if value is None or value.tzinfo is None or _format_time(value) != text:
        raise ValueError(f"audit record time {text!r} is not in the stored format {_TIME_SHAPE}")
    return value


_RECORD_FIELDS = frozenset(
    {
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
)


@dataclass(frozen=True)
class ChainHead:
    """The end of a chain: the last event's id and hash. Also a checkpoint to keep elsewhere."""

    id: int
    hash: str


GENESIS_HEAD = ChainHead(id=0, hash=GENESIS_HASH)


@dataclass(frozen=True)
class ChainedEvent:
    """An event as stored: the event, the previous event's hash, and its own hash."""

    event: AuditEvent
    prev_hash: str
    hash: str

    @property
    def head(self) -> ChainHead:
        """This event as the head of the chain."""
        return ChainHead(id=self.event.id, hash=self.hash)


def _check_hash(name: str, value: object) -> str:
    if not isinstance(value, str) or not _HASH_PATTERN.fullmatch(value):
        raise ValueError(f"{name} must be 64 lowercase hex digits, got {value!r}")
    return value


def chain_hash(
    prev_hash: str, event: AuditEvent | Mapping[str, Any], *, key: bytes | None = None
) -> str:
    """The hash of ``event`` following an event whose hash is ``prev_hash``.

    ``SHA-256(prev_hash + canonical_json(event))`` as hex, or HMAC-SHA256 with ``key``.
    ``event`` may be an :class:`AuditEvent` (hashed as :meth:`AuditEvent.to_record`) or any
    JSON mapping.

    Raises:
        ValueError: ``prev_hash`` is not 64 lowercase hex digits, or ``key`` is empty.
        CanonicalJSONError: ``event`` holds a value with no stable JSON form.
    """
    _check_hash("prev_hash", prev_hash)
    record = event.to_record() if isinstance(event, AuditEvent) else event
    data = (prev_hash + canonical_json(record)).encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    if not isinstance(key, bytes) or not key:
        raise ValueError(f"the chain key must be non-empty bytes, got {type(key).__name__}")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def seal_event(
    head: ChainHead,
    *,
    time: datetime,
    actor: str,
    action: str,
    target: str | None,
    outcome: str,
    key_id: str | None = None,
    request_id: str | None = None,
    source_address: str | None = None,
    details: Mapping[str, Any] | None = None,
    chain_key: bytes | None = None,
) -> ChainedEvent:
    """The next event after ``head``, with ``details`` redacted, numbered and hashed.

    Call it inside the transaction that read ``head`` (the last stored event, or
    :data:`GENESIS_HEAD`) and insert the result in the same transaction, so two writers
    cannot both append after the same event.
    """
    event = AuditEvent(
        id=head.id + 1,
        time=time,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        key_id=key_id,
        request_id=request_id,
        source_address=source_address,
        details=redact(details or {}),
    )
    return ChainedEvent(event, head.hash, chain_hash(head.hash, event, key=chain_key))


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """The verdict of :func:`verify_chain`.

    Attributes:
        ok: True when every event verified (and the checkpoint, if given, matched).
        checked: How many events verified before the first bad one.
        head: The last good position of the chain.
        first_bad_id: Id of the first bad event; for a truncated tail, the first missing id.
        first_bad_index: Its position in the sequence given; ``len(events)`` for a truncated
            tail.
        reason: Why it is bad, in words for the operator; empty when ``ok``.
    """

    ok: bool
    checked: int
    head: ChainHead
    first_bad_id: int | None = None
    first_bad_index: int | None = None
    reason: str = ""


def verify_chain(
    events: Sequence[ChainedEvent],
    *,
    key: bytes | None = None,
    start: ChainHead = GENESIS_HEAD,
    checkpoint: ChainHead | None = None,
) -> VerifyResult:
    """Check a stored chain in the order given (by id) and name the first bad event.

    Args:
        events: The stored events, ordered by id.
        key: The chain key the events were sealed with, if any.
        start: Where ``events`` begin: :data:`GENESIS_HEAD` for a whole chain, or the head
            of the last archived segment.
        checkpoint: A head recorded earlier outside the database; the chain must pass
            through it, which detects deleted events at the end.

    Raises:
        ValueError: ``checkpoint`` lies before ``start``.
    """
    if checkpoint is not None and checkpoint.id < start.id:
        raise ValueError(
            f"checkpoint at id {checkpoint.id} lies before the start of the chain at id {start.id}"
        )
    head = start
    later_ids = _ids_by_position(events)
    for index, stored in enumerate(events):
        problem = _problem_with(stored, head, key, later_ids[index + 1 :])
        if problem is not None:
            return VerifyResult(False, index, head, _id_of(stored), index, problem)
        head = stored.head
        if checkpoint is not None and head.id == checkpoint.id and head.hash != checkpoint.hash:
            return VerifyResult(
                False,
                index,
                head,
                head.id,
                index,
                f"event {head.id} hashes to {head.hash[:12]}… but the checkpoint recorded "
                f"{checkpoint.hash[:12]}…: the chain was rewritten at or before this event",
            )

    if checkpoint is not None and head.id < checkpoint.id:
        return VerifyResult(
            False,
            len(events),
            head,
            head.id + 1,
            len(events),
            f"the chain ends at id {head.id} but the checkpoint recorded id {checkpoint.id}: "
            f"events {head.id + 1}..{checkpoint.id} were deleted",
        )
    return VerifyResult(True, len(events), head)


def _ids_by_position(events: Sequence[ChainedEvent]) -> list[object]:
    return [_id_of(stored) for stored in events]


def _id_of(stored: object) -> int | None:
    event = getattr(stored, "event", None)
    event_id = getattr(event, "id", None)
    return event_id if isinstance(event_id, int) else None


def _problem_with(
    stored: ChainedEvent, head: ChainHead, key: bytes | None, later_ids: list[object]
) -> str | None:
    """Why ``stored`` cannot follow ``head``, or None. Content first: it explains most."""
    if not isinstance(stored, ChainedEvent) or not isinstance(stored.event, AuditEvent):
        return f"expected a ChainedEvent, got {type(stored).__name__}"
    event_id = stored.event.id
    if not isinstance(stored.hash, str) or not isinstance(stored.prev_hash, str):
        return f"event {event_id} has a hash that is not text"

    recomputed = (
        chain_hash(stored.prev_hash, stored.event, key=key) if _is_hash(stored.prev_hash) else None
    )
    if recomputed is None or not hmac.compare_digest(recomputed, stored.hash):
        forged = " or was written without the chain key" if key is not None else ""
        return f"event {event_id} does not match its stored hash: a field was edited{forged}"

    if event_id != head.id + 1:
        return _describe_misplaced(event_id, head, later_ids)

    if not hmac.compare_digest(stored.prev_hash, head.hash):
        return (
            f"event {event_id} does not link to event {head.id}: its prev_hash "
            f"{stored.prev_hash[:12]}… differs from that event's hash {head.hash[:12]}…"
        )
    return None


def _is_hash(value: str) -> bool:
    return _HASH_PATTERN.fullmatch(value) is not None


def _describe_misplaced(event_id: int, head: ChainHead, later_ids: list[object]) -> str:
    expected = head.id + 1
    if event_id <= head.id:
        return (
            f"event {event_id} comes after event {head.id}: ids must increase by one, so a row "
            f"was inserted before it or events were reordered"
        )
    if expected in later_ids:
        return (
            f"event {event_id} comes right after event {head.id}, but event {expected} appears "
            "later: events were reordered"
        )
    missing = str(expected) if event_id == expected + 1 else f"{expected}..{event_id - 1}"
    return f"event {event_id} follows event {head.id}: event(s) {missing} were deleted"


# --- redaction --------------------------------------------------------------------------------

# Substrings of a normalised key name (lower case, letters and digits only) that mark a secret.
_SECRET_MARKERS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "privatekey",
    "credential",
    "accesskey",
    "sessionid",
    "pepper",
    "bearer",
    "signingkey",
)
# Public identifiers whose names contain a marker; auditors need them.
_PUBLIC_SUFFIXES = ("keyid", "tokenid")

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:api[_\-]?key|apikey|access[_\-]?token|token|secret|password|passwd|auth|key)"
    r"=)[^&#\s]+"
)


def _is_secret_name(name: str, markers: tuple[str, ...]) -> bool:
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    if normalised.endswith(_PUBLIC_SUFFIXES):
        return False
    return any(marker in normalised for marker in markers)


def _redact_text(text: str) -> str:
    text = KEY_PATTERN.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m[1]}{REDACTED}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}{REDACTED}", text)


def redact(details: Any, *, extra_markers: Iterable[str] = ()) -> Any:
    """A copy of ``details`` with secrets replaced by :data:`REDACTED`, at any depth.

    A value is replaced whole when its key looks secret (``password``, ``client_secret``,
    ``X-Api-Key``, ``Authorization``, ``refresh_token`` ...; names ending in ``key_id`` or
    ``token_id`` are public ids and kept). Inside any string, our API keys, ``Bearer``/``Basic``
    credentials, passwords in URLs and secret-looking query parameters are replaced in place.
    The key itself stays, so the trail still shows that a secret was present.

    Args:
        details: Any JSON-like value; dicts and lists are copied, the input is not changed.
        extra_markers: More name fragments to treat as secret (matched like the built-in
            ones: lower case, letters and digits only).
    """
    markers = _SECRET_MARKERS + tuple(re.sub(r"[^a-z0-9]", "", m.lower()) for m in extra_markers)
    return _redact(details, markers)


def _redact(value: Any, markers: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if item is not None and _is_secret_name(str(key), markers)
            else _redact(item, markers)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, markers) for item in value]
    if isinstance(value, str):
        return _redact_text(value)
    return value
