"""Roles, fine-grained permissions, principals, and the one authorisation check.

The whole policy is :data:`PERMISSION_TABLE`: one row per permission with its description and
the roles that hold it. Everything else (:data:`ROLE_PERMISSIONS`, the Markdown for the docs)
is derived from it, so the docs cannot drift from the code.

:func:`authorize` checks, in this order and for a reason:

1. **clearance** — a resource above the principal's clearance raises :class:`ResourceHidden`
   before anything else, so a caller without the permission gets the same 404 for a hidden id
   as for a missing one (a 403 would prove that the id exists);
2. **permission** — from the role, plus the principal's extra grants;
3. **scope** — the principal owns the resource, or it belongs to their department, or they
   hold ``task:any-department``.

The service layer (not the routers) calls it; a missing resource is the service's own 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from phantom_spire.security.classification import Level, can_see
from phantom_spire.security.errors import PermissionDenied, ResourceHidden

__all__ = [
    "PERMISSION_TABLE",
    "ROLE_PERMISSIONS",
    "ListingScope",
    "Permission",
    "Principal",
    "Resource",
    "Role",
    "authorize",
    "is_visible",
    "listing_scope",
    "permission_table_markdown",
]


class Role(StrEnum):
    """A user's role; each role is a set of permissions in :data:`PERMISSION_TABLE`."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    RESPONDER = "responder"
    ADMIN = "admin"
    AUDITOR = "auditor"

    @classmethod
    def parse(cls, value: object) -> Role:
        """The role named ``value`` (case-insensitive).

        Raises:
            ValueError: no such role; the message lists the roles.
        """
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(f"unknown role {value!r}; expected one of {', '.join(Role)}")


class Permission(StrEnum):
    """A fine-grained permission, written ``area:action``."""

    TASK_READ = "task:read"
    TASK_CREATE = "task:create"
    TASK_EXECUTE = "task:execute"
    TASK_CONTROL = "task:control"
    TASK_DELETE = "task:delete"
    TASK_ANY_DEPARTMENT = "task:any-department"
    WORKFLOW_READ = "workflow:read"
    WORKFLOW_RUN = "workflow:run"
    SCHEDULE_READ = "schedule:read"
    SCHEDULE_MANAGE = "schedule:manage"
    EVIDENCE_READ = "evidence:read"
    EVIDENCE_COLLECT = "evidence:collect"
    INDICATOR_READ = "indicator:read"
    INDICATOR_WRITE = "indicator:write"
    AUDIT_READ = "audit:read"
    AUDIT_VERIFY = "audit:verify"
    ADMIN_KEYS = "admin:keys"
    ADMIN_USERS = "admin:users"
    SYSTEM_READ = "system:read"

    @classmethod
    def parse(cls, value: object) -> Permission:
        """The permission named ``value``, e.g. ``"task:read"``.

        Raises:
            ValueError: no such permission; the message lists them.
        """
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(f"unknown permission {value!r}; expected one of {', '.join(Permission)}")


_V, _AN, _R, _AD, _AU = Role.VIEWER, Role.ANALYST, Role.RESPONDER, Role.ADMIN, Role.AUDITOR
_EVERYONE = frozenset(Role)

# The policy. Auditors read everything across departments but change nothing; responders are
# analysts who may also collect evidence and manage schedules; only admins delete tasks and
# manage keys and users, so deleting evidence-bearing work stays a deliberate act.
PERMISSION_TABLE: Final[dict[Permission, tuple[str, frozenset[Role]]]] = {
    Permission.TASK_READ: ("List, search and read tasks and their executions", _EVERYONE),
    Permission.TASK_CREATE: ("Submit new tasks", frozenset({_AN, _R, _AD})),
    Permission.TASK_EXECUTE: ("Run or retry a task now", frozenset({_AN, _R, _AD})),
    Permission.TASK_CONTROL: ("Pause, resume or cancel a task", frozenset({_AN, _R, _AD})),
    Permission.TASK_DELETE: ("Delete a task and its history", frozenset({_AD})),
    Permission.TASK_ANY_DEPARTMENT: (
        "Act on resources of every department, not only one's own",
        frozenset({_AD, _AU}),
    ),
    Permission.WORKFLOW_READ: ("Read workflows and their graphs", _EVERYONE),
    Permission.WORKFLOW_RUN: ("Start or cancel a workflow run", frozenset({_AN, _R, _AD})),
    Permission.SCHEDULE_READ: ("Read schedules", _EVERYONE),
    Permission.SCHEDULE_MANAGE: ("Create, change or delete schedules", frozenset({_R, _AD})),
    Permission.EVIDENCE_READ: ("Read collected evidence", frozenset({_AN, _R, _AD, _AU})),
    Permission.EVIDENCE_COLLECT: ("Collect evidence into custody", frozenset({_R, _AD})),
    Permission.INDICATOR_READ: ("Read and search indicators", _EVERYONE),
    Permission.INDICATOR_WRITE: ("Add, edit or retire indicators", frozenset({_AN, _R, _AD})),
    Permission.AUDIT_READ: ("Read the audit trail", frozenset({_AD, _AU})),
    Permission.AUDIT_VERIFY: ("Verify the audit hash chain", frozenset({_AD, _AU})),
    Permission.ADMIN_KEYS: ("Create, rotate and revoke API keys", frozenset({_AD})),
    Permission.ADMIN_USERS: ("Create users and change roles", frozenset({_AD})),
    Permission.SYSTEM_READ: ("Read health and metrics", frozenset({_V, _AN, _R, _AD, _AU})),
}

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    role: frozenset(p for p, (_, roles) in PERMISSION_TABLE.items() if role in roles)
    for role in Role
}


def _check_table_is_complete() -> None:
    # An import-time guard: a permission added to the enum but not to the table would
    # otherwise be silently held by nobody, and the docs would not list it.
    missing = [p.value for p in Permission if p not in PERMISSION_TABLE]
    if missing:
        raise RuntimeError(f"permissions missing from PERMISSION_TABLE: {missing!r}")


_check_table_is_complete()


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user (or automation) with a role, a department and a clearance.

    Attributes:
        user_id: Stable user id; appears in audit events and error messages.
        role: The user's role.
        department: The department whose resources the user may act on.
        clearance: The highest classification level the user may learn of.
        grants: Extra permissions beyond the role, e.g. ``task:any-department``.
    """

    user_id: str
    role: Role
    department: str
    clearance: Level
    grants: frozenset[Permission] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id:
            raise ValueError(f"Principal.user_id must be a non-empty string, got {self.user_id!r}")
        object.__setattr__(self, "role", Role.parse(self.role))
        if not isinstance(self.clearance, Level):
            raise TypeError(f"Principal.clearance must be a Level, got {self.clearance!r}")
        grants = self.grants
        if isinstance(grants, str) or not isinstance(grants, Iterable):
            raise TypeError(f"Principal.grants must be a set of permissions, got {grants!r}")
        object.__setattr__(self, "grants", frozenset(Permission.parse(g) for g in grants))

    @property
    def permissions(self) -> frozenset[Permission]:
        """Everything the principal may do: the role's permissions plus the extra grants."""
        return ROLE_PERMISSIONS[self.role] | self.grants

    def has(self, permission: Permission | str) -> bool:
        """Whether the principal holds ``permission`` (ignoring resource scope)."""
        return Permission.parse(permission) in self.permissions


@dataclass(frozen=True)
class Resource:
    """What :func:`authorize` needs to know about the thing being acted on.

    Attributes:
        kind: A noun for messages, e.g. ``"task"`` or ``"workflow"``.
        owner: User id of the owner; the owner may act on it from any department.
        department: The department it belongs to; ``None`` means unscoped.
        level: Its classification level; ``None`` means the lowest level.
    """

    kind: str
    owner: str | None = None
    department: str | None = None
    level: Level | None = None


def is_visible(principal: Principal, resource: Resource) -> bool:
    """Whether ``principal`` may learn that ``resource`` exists (its level is within clearance).

    Listing, counting and search must filter with the same rule, so that a hidden resource is
    absent from every answer rather than denied.
    """
    return resource.level is None or can_see(principal.clearance, resource.level)


def authorize(
    principal: Principal, permission: Permission | str, resource: Resource | None = None
) -> None:
    """Allow the action or raise; never returns a flag that a caller could forget to check.

    Raises:
        ResourceHidden: ``resource`` is above the principal's clearance (answer 404, exactly
            as for a missing id). Its message names only the principal and the permission.
        PermissionDenied: the principal's role and grants lack ``permission``, or ``resource``
            is owned by someone else in another department and the principal lacks
            ``task:any-department``.
        ValueError: ``permission`` is not a known permission (a programming error).
    """
    wanted = Permission.parse(permission)
    if resource is not None and not is_visible(principal, resource):
        raise ResourceHidden(
            f"user {principal.user_id!r} may not {wanted}: the resource does not exist or is "
            "not visible to them",
            principal_id=principal.user_id,
            permission=wanted.value,
            reason="clearance",
        )

    if wanted not in principal.permissions:
        raise PermissionDenied(
            f"user {principal.user_id!r} may not {wanted}: role {principal.role.value!r} does "
            f"not grant it and neither do their extra grants",
            principal_id=principal.user_id,
            permission=wanted.value,
            reason="role",
        )

    if resource is not None and not _in_scope(principal, resource):
        raise PermissionDenied(
            f"user {principal.user_id!r} may not {wanted} on this {resource.kind}: it belongs "
            f"to another department than {principal.department!r}, they do not own it, and "
            f"they lack {Permission.TASK_ANY_DEPARTMENT}",
            principal_id=principal.user_id,
            permission=wanted.value,
            reason="department",
        )


def _in_scope(principal: Principal, resource: Resource) -> bool:
    return (
        resource.department is None
        or resource.department == principal.department
        or (resource.owner is not None and resource.owner == principal.user_id)
        or Permission.TASK_ANY_DEPARTMENT in principal.permissions
    )


@dataclass(frozen=True)
class ListingScope:
    """The rows a principal may see in a listing, count or search, as data for a query.

    The store turns it into a ``WHERE`` clause; :meth:`admits` is the same rule in Python and
    agrees with :func:`authorize` for every resource.

    Attributes:
        max_level: Highest classification level to include.
        department: Only this department (plus unscoped rows and the principal's own);
            ``None`` means every department.
        owner: The principal's user id: their own rows are always in scope.
    """

    max_level: Level
    department: str | None
    owner: str

    def admits(self, resource: Resource) -> bool:
        """Whether ``resource`` belongs in the listing."""
        if resource.level is not None and not can_see(self.max_level, resource.level):
            return False
        return (
            self.department is None
            or resource.department is None
            or resource.department == self.department
            or (resource.owner is not None and resource.owner == self.owner)
        )


def listing_scope(principal: Principal, permission: Permission | str) -> ListingScope:
    """What ``principal`` may list under ``permission`` (e.g. ``task:read``).

    Raises:
        PermissionDenied: the principal lacks ``permission`` altogether.
    """
    authorize(principal, permission)
    every_department = Permission.TASK_ANY_DEPARTMENT in principal.permissions
    return ListingScope(
        max_level=principal.clearance,
        department=None if every_department else principal.department,
        owner=principal.user_id,
    )


def permission_table_markdown() -> str:
    """The permission table as a Markdown table for the docs: one row per permission.

    Example row: ``| `task:read` | List, search and read tasks ... | ✓ | ✓ | ✓ | ✓ | ✓ |``.
    """
    roles = list(Role)
    header = "| Permission | Meaning | " + " | ".join(r.value for r in roles) + " |"
    rule = "| --- | --- | " + " | ".join(":---:" for _ in roles) + " |"
    rows = [
        f"| `{permission.value}` | {description} | "
        + " | ".join("✓" if role in holders else "" for role in roles)
        + " |"
        for permission, (description, holders) in PERMISSION_TABLE.items()
    ]
    return "\n".join([header, rule, *rows]) + "\n"
