"""IdentityService: users, API keys, and who is calling.

Keys are generated, hashed and verified by :mod:`phantom_spire.security.apikeys`; this module
stores them and turns a presented key into a :class:`Principal`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from phantom_spire.errors import InvalidQuery, NotFound
from phantom_spire.security import (
    ApiKeyRecord,
    ApiKeyRejected,
    ClassificationScheme,
    Permission,
    Principal,
    Role,
    authorize,
    generate_api_key,
    key_id_of,
    revoke_api_key,
    rotate_api_key,
    verify_api_key,
)
from phantom_spire.store import Store

__all__ = ["SYSTEM", "Actor", "IdentityService"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """A principal and the request it came with: what every audit event records."""

    principal: Principal
    key_id: str | None = None
    request_id: str | None = None
    source_address: str | None = None

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def audit(
        self,
        action: str,
        target_id: str | None,
        outcome: str = "success",
        target_type: str = "task",
        **details: Any,
    ) -> dict[str, Any]:
        """An audit event for this actor."""
        return {
            "actor": self.user_id,
            "key_id": self.key_id,
            "request_id": self.request_id,
            "source_address": self.source_address,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "outcome": outcome,
            "details": details or None,
        }


def _system_actor() -> Actor:
    from phantom_spire.security import DEFAULT_SCHEME

    principal = Principal(
        "system",
        Role.ADMIN,
        "system",
        DEFAULT_SCHEME.highest,
        frozenset({Permission.TASK_ANY_DEPARTMENT}),
    )
    return Actor(principal)


SYSTEM = _system_actor()


class IdentityService:
    """Creates users and keys, and authenticates presented keys."""

    def __init__(self, store: Store, *, pepper: bytes | None, scheme: ClassificationScheme) -> None:
        self.store = store
        self.pepper = pepper
        self.scheme = scheme

    def _clock(self) -> datetime:
        return datetime.fromtimestamp(self.store.clock(), UTC)

    def create_user(
        self,
        user_id: str,
        role: str,
        department: str,
        clearance: str,
        grants: list[str] | None = None,
    ) -> dict[str, Any]:
        role_ = Role.parse(role)
        level = self.scheme.parse(clearance)
        for grant in grants or []:
            Permission.parse(grant)
        row = {
            "id": user_id,
            "role": role_.value,
            "department": department,
            "clearance": level.rank,
            "grants": sorted(grants or []),
        }
        self.store.insert_user(row)
        return row

    def issue_key(
        self, actor: Actor, user_id: str, *, label: str = "", ttl_days: int | None = 90
    ) -> tuple[str, str]:
        """A new key for ``user_id``: returns ``(key_id, plaintext)``; show it once."""
        authorize(actor.principal, Permission.ADMIN_KEYS)
        if self.store.get_user(user_id) is None:
            raise InvalidQuery(
                f"no user {user_id!r}; create the user first", field="userId", value=user_id
            )
        ttl = timedelta(days=ttl_days) if ttl_days else None
        issued = generate_api_key(
            user_id, pepper=self.pepper, ttl=ttl, label=label, clock=self._clock
        )
        self.store.save_api_key(
            _record_row(issued.record),
            audit=actor.audit("key.create", issued.key_id, target_type="api_key", user=user_id),
        )
        return issued.key_id, issued.plaintext

    def revoke_key(self, actor: Actor, key_id: str) -> None:
        authorize(actor.principal, Permission.ADMIN_KEYS)
        record = self._existing_record(key_id)
        self.store.save_api_key(
            _record_row(revoke_api_key(record, clock=self._clock)),
            audit=actor.audit("key.revoke", key_id, target_type="api_key"),
        )

    def rotate_key(
        self, actor: Actor, key_id: str, *, overlap_hours: float = 24
    ) -> tuple[str, str]:
        """A successor key; the old one keeps working for ``overlap_hours``."""
        authorize(actor.principal, Permission.ADMIN_KEYS)
        record = self._existing_record(key_id)
        rotation = rotate_api_key(
            record, pepper=self.pepper, overlap=timedelta(hours=overlap_hours), clock=self._clock
        )
        self.store.save_api_key(_record_row(rotation.retiring))
        self.store.save_api_key(
            _record_row(rotation.issued.record),
            audit=actor.audit(
                "key.rotate", key_id, target_type="api_key", successor=rotation.issued.key_id
            ),
        )
        return rotation.issued.key_id, rotation.issued.plaintext

    def bootstrap_admin(
        self, user_id: str = "admin", department: str = "soc"
    ) -> tuple[str, str] | None:
        """On a store with no users: create an admin and return its first key, else None."""
        if self.store.count_users():
            return None
        self.create_user(
            user_id,
            "admin",
            department,
            self.scheme.highest.name,
            [Permission.TASK_ANY_DEPARTMENT.value],
        )
        return self.issue_key(SYSTEM, user_id, label="bootstrap", ttl_days=None)

    def authenticate(
        self, presented: str, *, request_id: str | None = None, source_address: str | None = None
    ) -> Actor:
        """The actor behind a presented key; raises ApiKeyRejected (401) otherwise."""
        record = self._record(key_id_of(presented))
        verify_api_key(presented, record, pepper=self.pepper, clock=self._clock)
        user = self.store.get_user(record.user_id)
        if user is None or user["disabled_at"] is not None:
            raise ApiKeyRejected("the key's user is disabled or gone", reason="revoked")
        principal = Principal(
            user_id=user["id"],
            role=Role.parse(user["role"]),
            department=user["department"],
            clearance=self.scheme.levels[min(user["clearance"], len(self.scheme.levels) - 1)],
            grants=frozenset(Permission.parse(g) for g in user["grants"] or []),
        )
        return Actor(principal, record.key_id, request_id, source_address)

    def _existing_record(self, key_id: str) -> ApiKeyRecord:
        """A key record for administration: an unknown id is NotFound (404), not a 401."""
        try:
            return self._record(key_id)
        except ApiKeyRejected:
            raise NotFound("API key", key_id) from None

    def _record(self, key_id: str) -> ApiKeyRecord:
        row = self.store.get_api_key(key_id)
        if row is None:
            raise ApiKeyRejected("no such key", reason="unknown")
        return ApiKeyRecord(
            key_id=row["key_id"],
            user_id=row["user_id"],
            secret_hash=row["secret_hash"],
            created_at=_dt(row["created_at"]),
            expires_at=_dt(row["expires_at"]),
            revoked_at=_dt(row["revoked_at"]),
            replaced_by=row["replaced_by"],
            label=row["label"],
        )


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _record_row(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "user_id": record.user_id,
        "secret_hash": record.secret_hash,
        "label": record.label,
        "created_at": _ts(record.created_at),
        "expires_at": _ts(record.expires_at),
        "revoked_at": _ts(record.revoked_at),
        "replaced_by": record.replaced_by,
    }
