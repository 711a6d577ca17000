"""Undo the usual ways analysts "defang" indicators so they cannot be clicked.

Written by hand: the peers that do this (ioc-fanger, iocextract) are either unmaintained or pull
in heavy dependencies, and the rules are a page of regular expressions. Each rule below names
the defang style it undoes; the order matters because later rules assume earlier ones ran (for
example the scheme rules run before the ``[:]``/``//`` repair).

Rules are deliberately conservative where a rewrite could damage ordinary prose: an upper-case
``AT``/``DOT`` word only counts between name-like tokens, and a bracket only counts as a defang
when it wraps the dot on both sides (``www.[example`` is left alone).
"""

from __future__ import annotations

import re

__all__ = ["refang"]

_BRACKETS_OPEN = r"[\[\(\{<]"
_BRACKETS_CLOSE = r"[\]\)\}>]"
_ANY_BRACKET = r"[\[\]\(\)\{\}<>]"

_REGISTRY_HIVE = re.compile(r"^\s*<?(HKEY_|HK(?:LM|CU|CR|U|CC)\b)", re.IGNORECASE)

# Scheme defangs: hxxp, hXXps, xxxx://, xxxxs://, fxp://, ftx://, (http)://
_SCHEME_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\(\s*(https?|ftps?|sftp)\s*\)(?=\s*[\[\(]?:)", re.IGNORECASE), r"\1"),
    (
        re.compile(r"\bh(?:xx|tx|xt|\*\*)p(s?)(?=\s*[\[\(]?:|\[://\]|//|:__)", re.IGNORECASE),
        r"http\1",
    ),
    (re.compile(r"\b[x]{5}(?=\s*[\[\(]?:)", re.IGNORECASE), "https"),
    (re.compile(r"\b[x]{4}(s?)(?=\s*[\[\(]?:)", re.IGNORECASE), r"http\1"),
    (re.compile(r"\bf(?:xp|tx)(s?)(?=\s*[\[\(]?:)", re.IGNORECASE), r"ftp\1"),
    (re.compile(r"\bsf(?:xp|tx)(?=\s*[\[\(]?:)", re.IGNORECASE), "sftp"),
)

_KNOWN_SCHEMES = r"(?:https?|ftps?|sftp|wss?|ldaps?|smb|rdp|tcp|udp)"

# After a scheme: "[:]//", "[://]", " ://", ":// ", "//" (colon dropped), ":///", ":__".
_SCHEME_SEPARATOR = re.compile(
    rf"\b({_KNOWN_SCHEMES})"
    r"(?:\s*\[://\]|\s*(?:\[:\]|\(:\)|:)\s*(?:/{2,3}|\\/\\/|__|\[//\]|\(//\))|//)"
    r"[ \t]*(?=[^\s/])",
    re.IGNORECASE,
)

# A dot wrapped by a bracket on both sides: [.] (.) {.} <.> [.[ ].] ].[ }.{ and with spaces
# inside the symmetric forms ("example [.] com").
_DOT_SYMMETRIC_SPACED = re.compile(r"\s*(?:\[\s*\.\s*\]|\(\s*\.\s*\)|\{\s*\.\s*\})\s*")
_DOT_BRACKETED = re.compile(rf"{_ANY_BRACKET}\.{_ANY_BRACKET}")
_DOT_WORDS = re.compile(
    rf"\s*{_BRACKETS_OPEN}\s*(?:dot|punto|punkt)\s*{_BRACKETS_CLOSE}\s*", re.IGNORECASE
)
# Upper-case DOT as a word between names ("example DOT com"), or glued between lower-case
# names ("fooDOTcom"); lower-case "dot" in prose is left alone.
_DOT_UPPER_WORD = re.compile(r"(?<=[\w-])\s+DOT\s+(?=[\w-])")
_DOT_GLUED = re.compile(r"(?<=[a-z0-9])DOT(?=[a-z0-9])")
_DOT_HYPHENATED = re.compile(r"(?<=\w)-dot-(?=\w)", re.IGNORECASE)
_DOT_ESCAPED = re.compile(r"(?<=\w)(?:\\|\^)\.(?=\w)")

_AT_BRACKETED = re.compile(
    rf"\s*{_BRACKETS_OPEN}\s*(?:at|@|arroba|et)\s*{_BRACKETS_CLOSE}\s*", re.IGNORECASE
)
# "bob AT example.com": upper-case AT only when a domain-looking token follows.
_DOMAINISH_AHEAD = r"(?=[\w-]+(?:\.|\s+DOT\s+|\[\.\]|\(\.\))\w)"
_AT_UPPER_WORD = re.compile(rf"(?<=[\w.+-])\s+AT\s+{_DOMAINISH_AHEAD}")
_AT_GLUED = re.compile(r"(?<=[a-z0-9])AT(?=[a-z0-9][\w-]*\.[a-z])")
_AT_SPACED = re.compile(rf"(?<=\w) @ {_DOMAINISH_AHEAD}")

_COLON_BRACKETED = re.compile(r"\[:\]|\(:\)|\{:\}")
_SLASH_BRACKETED = re.compile(r"\[/\]|\(/\)|\{/\}|\\/")
# "(www).example.com" / "[www].example.com": a bracketed leading label.
_WRAPPED_LABEL = re.compile(r"(?<![\w.])[\(\[](www\d?|ftp|mail)[\)\]](?=\.\w)", re.IGNORECASE)

# "1,2,3,4" as a defanged IPv4 address; only exactly four comma-separated octets.
_COMMA_IPV4 = re.compile(r"(?<![\d,.])(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})(?![\d,]|\.\d)")


def _comma_ipv4(match: re.Match[str]) -> str:
    octets = match.groups()
    if all(int(octet) <= 255 for octet in octets):
        return ".".join(octets)
    return match.group(0)


# Values no rule below can change: letters, digits, dot, hyphen and underscore, with no
# upper-case letter past F (so no "DOT"/"AT" word), no x (hxxp, xxxx) and no "-dot-". Feeds are
# mostly such values (hashes, addresses, plain domains); skipping twenty regex passes for them
# roughly halves the time to read a large feed.
_PLAIN = re.compile(r"[a-zA-F0-9._-]*")


def _is_plain(text: str) -> bool:
    return _PLAIN.fullmatch(text) is not None and "x" not in text and "-dot-" not in text


def refang(text: str) -> str:
    """Return ``text`` with defanged indicators restored to their usable form.

    Handles ``hxxp``/``hXXps``/``xxxx``/``fxp`` schemes, ``[:]``, ``[://]``, broken ``://``
    separators, ``[.]``/``(.)``/``{.}``/``<.>`` and mixed-bracket dots, ``[dot]``/``(dot)``,
    ``\\.``, ``^.``, ``-dot-``, ``[at]``/``(at)``/``[@]``/``AT``, ``[/]``, ``\\/`` and
    comma-separated IPv4 addresses. Text that carries no defanging comes back unchanged.

    Args:
        text: any text: a single value or a whole report.

    Returns:
        The refanged text.
    """
    if not text or _is_plain(text):
        return text
    for pattern, replacement in _SCHEME_RULES:
        text = pattern.sub(replacement, text)
    text = _COLON_BRACKETED.sub(":", text)
    text = _SCHEME_SEPARATOR.sub(r"\1://", text)

    text = _WRAPPED_LABEL.sub(r"\1", text)
    text = _DOT_WORDS.sub(".", text)
    text = _DOT_SYMMETRIC_SPACED.sub(".", text)
    text = _DOT_BRACKETED.sub(".", text)
    text = _DOT_UPPER_WORD.sub(".", text)
    text = _DOT_GLUED.sub(".", text)
    text = _DOT_HYPHENATED.sub(".", text)
    if not _REGISTRY_HIVE.match(text):
        # Registry keys legitimately contain "\." (HKCR\.exe); elsewhere it is a defang.
        text = _DOT_ESCAPED.sub(".", text)
        text = _SLASH_BRACKETED.sub("/", text)

    text = _AT_BRACKETED.sub("@", text)
    text = _AT_UPPER_WORD.sub("@", text)
    text = _AT_GLUED.sub("@", text)
    text = _AT_SPACED.sub("@", text)

    return _COMMA_IPV4.sub(_comma_ipv4, text)
