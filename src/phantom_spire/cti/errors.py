"""Exceptions raised by the CTI library.

Hierarchy::

    CTIError
    ├── InvalidIndicator    one value is not a valid indicator of the expected type
    └── FeedFormatError     a whole file cannot be read as the requested/detected format
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CTIError", "FeedFormatError", "InvalidIndicator"]


class CTIError(Exception):
    """Base class of every error raised by ``phantom_spire.cti``."""


class InvalidIndicator(CTIError, ValueError):
    """A value could not be parsed as an indicator.

    Attributes:
        value: the offending raw value, as given.
        reason: what was wrong and what was expected.
    """

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid indicator {value!r}: {reason}")


class FeedFormatError(CTIError):
    """A feed file cannot be read as a feed of the given or detected format.

    Attributes:
        path: the file concerned.
        problem: what was found and what was expected.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{str(self.path)!r}: {problem}")
