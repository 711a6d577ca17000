"""The exceptions of the security building blocks, under one base.

    SpireError
     └── SecurityError
          ├── AccessDenied                 authorisation failed (never raised itself)
          │    ├── PermissionDenied        403: the caller may see the resource but not do this
          │    └── ResourceHidden          404: above clearance; must look exactly like "missing"
          ├── ClassificationError          a marking or level name is unknown (also ValueError)
          ├── CanonicalJSONError           an audit payload cannot be hashed stably (also ValueError)
          └── ApiKeyError                  an API key operation is invalid (rotate a revoked key ...)
               └── ApiKeyRejected          a presented key does not authenticate: 401

``ResourceHidden`` deliberately does not derive from ``PermissionDenied``: code that turns
``PermissionDenied`` into a 403 must never catch it by accident, because a 403 for a hidden
resource and a 404 for a missing one would tell the caller that the hidden one exists. Each
``AccessDenied`` carries ``http_status`` so a single handler can map both correctly.
"""

from __future__ import annotations

from phantom_spire.errors import SpireError

__all__ = [
    "AccessDenied",
    "ApiKeyError",
    "ApiKeyRejected",
    "CanonicalJSONError",
    "ClassificationError",
    "PermissionDenied",
    "ResourceHidden",
    "SecurityError",
]


class SecurityError(SpireError):
    """Base class of every error raised by ``phantom_spire.security``."""


class AccessDenied(SecurityError):
    """The principal may not perform the action; see the subclasses for the HTTP meaning.

    Attributes:
        principal_id: The user id of the principal that was refused.
        permission: The permission that was asked for, e.g. ``"task:delete"``.
        reason: A short machine-readable reason for the audit trail (``"role"``,
            ``"department"``, ``"clearance"``). It never names a level, department or id
            of a resource above the principal's clearance.
        http_status: The status the API must answer with.
    """

    http_status: int = 403

    def __init__(self, message: str, *, principal_id: str, permission: str, reason: str) -> None:
        super().__init__(message)
        self.principal_id = principal_id
        self.permission = permission
        self.reason = reason


class PermissionDenied(AccessDenied):
    """The principal lacks the permission, or the resource is outside their department."""

    http_status = 403


class ResourceHidden(AccessDenied):
    """The resource is above the principal's clearance; the API must answer as for a missing id."""

    http_status = 404


class ClassificationError(SecurityError, ValueError):
    """A TLP marking, classification level or level scheme is malformed or unknown."""


class CanonicalJSONError(SecurityError, ValueError):
    """A value cannot be turned into canonical JSON (NaN, bytes, a non-string key ...)."""


class ApiKeyError(SecurityError):
    """An API key operation is not possible, e.g. rotating a key that is already revoked."""


class ApiKeyRejected(ApiKeyError):
    """A presented API key does not authenticate; the API answers 401.

    The message never contains the presented key or any part of its secret.

    Attributes:
        reason: One of ``"malformed"``, ``"unknown"``, ``"mismatch"``, ``"expired"``,
            ``"revoked"``; for the audit trail, not for the client (the client gets one
            undifferentiated 401 so it cannot probe which keys exist).
        key_id: The public key id when it could be parsed, else ``None``.
    """

    def __init__(self, message: str, *, reason: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.key_id = key_id
