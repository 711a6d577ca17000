"""Sharing markings (TLP 2.0) and classification levels, with ordering and parsing.

Two independent axes mark every task and indicator:

* the **Traffic Light Protocol 2.0** marking says how far a result may be shared
  (CLEAR < GREEN < AMBER < AMBER+STRICT < RED);
* the **classification level** says who may see it at all, compared against a user's
  clearance. The levels are configurable; the default scheme is UNCLASSIFIED < CONFIDENTIAL
  < SECRET < TOP SECRET.

A task's output must be marked at least as high as its inputs: combine them with
:func:`strictest`. Written by hand because no maintained library models TLP 2.0 and
configurable level schemes; the rules are a few comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import overload

from phantom_spire.security.errors import ClassificationError

__all__ = [
    "DEFAULT_LEVEL_NAMES",
    "DEFAULT_SCHEME",
    "ClassificationScheme",
    "Level",
    "Marking",
    "Tlp",
    "can_see",
    "parse_level",
    "parse_tlp",
    "strictest",
]

# Separators people type between words of a level or marking name ("top_secret", "TOP-SECRET").
_SEPARATORS = re.compile(r"[\s_\-]+")


class Tlp(Enum):
    """A TLP 2.0 marking, ordered from least to most restrictive.

    ``value`` is the TLP 2.0 name without the ``TLP:`` prefix; :attr:`label` adds it.
    """

    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER+STRICT"
    RED = "RED"

    @property
    def rank(self) -> int:
        """Position in the order CLEAR (0) … RED (4)."""
        return _TLP_ORDER.index(self)

    @property
    def label(self) -> str:
        """The marking as written on documents, e.g. ``"TLP:AMBER+STRICT"``."""
        return f"TLP:{self.value}"

    def __str__(self) -> str:
        return self.label

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Tlp):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Tlp):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Tlp):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Tlp):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: object) -> Tlp:
        """Read a marking as people write it: ``"TLP:AMBER+STRICT"``, ``"amber_strict"``, ``"red"``.

        ``WHITE`` is accepted for ``CLEAR``: TLP 2.0 renamed it, and feeds still carry it.

        Raises:
            ClassificationError: ``value`` is not a string or names no TLP 2.0 marking.
        """
        if isinstance(value, Tlp):
            return value
        if not isinstance(value, str):
            raise ClassificationError(
                f"TLP marking must be a string, got {type(value).__name__} {value!r}; "
                f"expected one of {_TLP_CHOICES}"
            )
        key = value.strip().upper()
        key = re.sub(r"^TLP\s*[:\-_ ]\s*", "", key)
        key = _SEPARATORS.sub("+", key)
        member = _TLP_BY_NAME.get(key)
        if member is None:
            raise ClassificationError(
                f"unknown TLP marking {value!r}; expected one of {_TLP_CHOICES}"
            )
        return member


_TLP_ORDER: tuple[Tlp, ...] = tuple(Tlp)
_TLP_BY_NAME: dict[str, Tlp] = {member.value: member for member in Tlp} | {"WHITE": Tlp.CLEAR}
_TLP_CHOICES = ", ".join(member.label for member in Tlp)


def parse_tlp(value: object) -> Tlp:
    """Parse a TLP 2.0 marking; see :meth:`Tlp.parse`."""
    return Tlp.parse(value)


def _match_key(name: str) -> str:
    """The form two level names are compared in: upper case, separators as single spaces."""
    return _SEPARATORS.sub(" ", name.strip()).upper()


@dataclass(frozen=True)
class ClassificationScheme:
    """An ordered list of classification level names, lowest first.

    Names are stored upper case with runs of spaces, ``_`` and ``-`` collapsed to one space,
    so ``"top_secret"`` and ``"Top Secret"`` are the same level.

    Raises:
        ClassificationError: fewer than one name, an empty name, or two names that are the
            same after normalisation.
    """

    names: tuple[str, ...]
    _ranks: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not isinstance(self.names, Iterable):
            raise ClassificationError(
                f"classification levels must be a sequence of names, got {self.names!r}"
            )
        names = tuple(self.names)
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ClassificationError(
                    f"classification level names must be non-empty strings, got {name!r} "
                    f"in {names!r}"
                )
        normalised = tuple(_match_key(name) for name in names)
        if not normalised:
            raise ClassificationError("a classification scheme needs at least one level, got ()")
        duplicates = sorted({n for n in normalised if normalised.count(n) > 1})
        if duplicates:
            raise ClassificationError(
                f"classification levels must be distinct, but {duplicates!r} appear more "
                f"than once in {names!r}"
            )
        object.__setattr__(self, "names", normalised)
        object.__setattr__(self, "_ranks", {name: rank for rank, name in enumerate(normalised)})

    @classmethod
    def from_string(cls, spec: str) -> ClassificationScheme:
        """Build a scheme from a comma-separated setting, lowest first.

        Example: ``"PUBLIC, INTERNAL, RESTRICTED"`` (e.g. from ``SPIRE_CLASSIFICATION_LEVELS``).
        """
        if not isinstance(spec, str):
            raise ClassificationError(
                f"classification levels setting must be a string, got {spec!r}"
            )
        return cls(tuple(part for part in spec.split(",")))

    @property
    def levels(self) -> tuple[Level, ...]:
        """Every level, lowest first."""
        return tuple(Level(name, rank, self) for rank, name in enumerate(self.names))

    @property
    def lowest(self) -> Level:
        """The least restrictive level (where unmarked material belongs)."""
        return self.levels[0]

    @property
    def highest(self) -> Level:
        """The most restrictive level."""
        return self.levels[-1]

    def parse(self, value: object) -> Level:
        """The level named ``value`` (case and separators do not matter).

        Raises:
            ClassificationError: ``value`` is not a string or names no level of this scheme;
                the message lists the allowed names.
        """
        if isinstance(value, Level):
            if value.scheme != self:
                raise ClassificationError(
                    f"level {value.name!r} belongs to scheme {value.scheme.names!r}, "
                    f"not {self.names!r}"
                )
            return value
        if not isinstance(value, str):
            raise ClassificationError(
                f"classification level must be a string, got {type(value).__name__} "
                f"{value!r}; expected one of {', '.join(self.names)}"
            )
        rank = self._ranks.get(_match_key(value))
        if rank is None:
            raise ClassificationError(
                f"unknown classification level {value!r}; expected one of {', '.join(self.names)}"
            )
        return Level(self.names[rank], rank, self)


DEFAULT_LEVEL_NAMES: tuple[str, ...] = ("UNCLASSIFIED", "CONFIDENTIAL", "SECRET", "TOP SECRET")
DEFAULT_SCHEME = ClassificationScheme(DEFAULT_LEVEL_NAMES)


@dataclass(frozen=True)
class Level:
    """One classification level of a scheme; compare levels with ``<`` and friends.

    Levels of different schemes do not compare (``TypeError``): mixing two schemes is a
    configuration bug that must not silently grant or refuse access.
    """

    name: str
    rank: int
    scheme: ClassificationScheme = field(repr=False)

    def __str__(self) -> str:
        return self.name

    def _rank_against(self, other: object) -> int | None:
        if not isinstance(other, Level):
            return None
        if other.scheme != self.scheme:
            raise TypeError(
                f"cannot compare level {self.name!r} of scheme {self.scheme.names!r} with "
                f"level {other.name!r} of scheme {other.scheme.names!r}"
            )
        return other.rank

    def __lt__(self, other: object) -> bool:
        rank = self._rank_against(other)
        return NotImplemented if rank is None else self.rank < rank

    def __le__(self, other: object) -> bool:
        rank = self._rank_against(other)
        return NotImplemented if rank is None else self.rank <= rank

    def __gt__(self, other: object) -> bool:
        rank = self._rank_against(other)
        return NotImplemented if rank is None else self.rank > rank

    def __ge__(self, other: object) -> bool:
        rank = self._rank_against(other)
        return NotImplemented if rank is None else self.rank >= rank


def parse_level(value: object, scheme: ClassificationScheme = DEFAULT_SCHEME) -> Level:
    """Parse a classification level name in ``scheme``; see :meth:`ClassificationScheme.parse`."""
    return scheme.parse(value)


@dataclass(frozen=True)
class Marking:
    """The pair every task and indicator carries: a TLP marking and a classification level."""

    tlp: Tlp
    level: Level

    def __post_init__(self) -> None:
        if not isinstance(self.tlp, Tlp):
            raise ClassificationError(f"Marking.tlp must be a Tlp, got {self.tlp!r}")
        if not isinstance(self.level, Level):
            raise ClassificationError(f"Marking.level must be a Level, got {self.level!r}")

    def __str__(self) -> str:
        return f"{self.level.name} {self.tlp.label}"


def can_see(clearance: Level, level: Level) -> bool:
    """Whether a user cleared to ``clearance`` may learn of material classified ``level``.

    Raises:
        TypeError: the two levels belong to different schemes.
    """
    if not isinstance(clearance, Level) or not isinstance(level, Level):
        raise TypeError(f"can_see() compares two Level values, got {clearance!r} and {level!r}")
    return level <= clearance


@overload
def strictest(first: Tlp, *rest: Tlp) -> Tlp: ...
@overload
def strictest(first: Level, *rest: Level) -> Level: ...
@overload
def strictest(first: Marking, *rest: Marking) -> Marking: ...


def strictest(first: Tlp | Level | Marking, *rest: Tlp | Level | Marking) -> Tlp | Level | Marking:
    """The most restrictive of one or more markings of the same kind.

    For :class:`Marking` values each axis is combined separately, so TLP:RED UNCLASSIFIED
    and TLP:CLEAR SECRET give TLP:RED SECRET. Use it to mark a task's output at least as high
    as all of its inputs: ``strictest(task.marking, *input_markings)``.

    Raises:
        TypeError: the values are of different kinds, or levels of different schemes.
    """
    values = (first, *rest)
    kind = type(first)
    for value in values:
        if type(value) is not kind:
            raise TypeError(
                f"strictest() needs markings of one kind, got {kind.__name__} and "
                f"{type(value).__name__} {value!r}"
            )
    if isinstance(first, Marking):
        markings = [v for v in values if isinstance(v, Marking)]
        return Marking(max(m.tlp for m in markings), strictest(*(m.level for m in markings)))
    if isinstance(first, Tlp):
        return max(v for v in values if isinstance(v, Tlp))
    return max(v for v in values if isinstance(v, Level))
