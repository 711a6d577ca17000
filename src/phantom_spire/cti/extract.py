"""Find indicators in free text (reports, e-mails, blog posts, RSS entries).

The text is refanged (with a few extra, more aggressive rules that are only safe when looking
for indicators, see `_refang_for_extraction`), then scanned type by type. Each match is
validated and canonicalised by the same normalisers as `indicators.parse_indicator`, and the
span is blanked out, so a URL's path does not also yield domains or hashes and an e-mail's
domain is not also reported as a domain. A URL's host is reported as a domain or an address
in its own right.

Written by hand: the peer extractors (ioc-finder, iocextract, msticpy) each miss cases the
others get (see the shared IOC cases), and none canonicalises values the way our dedup needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from phantom_spire.cti import normalize as _n
from phantom_spire.cti.indicators import Indicator, indicator_tags
from phantom_spire.cti.refang import refang

__all__ = ["extract_indicators"]

_HIVES = r"HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_USERS|HKEY_CURRENT_CONFIG|HKEY_PERFORMANCE_DATA|HKLM|HKCU|HKCR|HKU|HKCC"

# --- extraction-only refanging --------------------------------------------------------------
# A dot next to unbalanced brackets between name characters ("111[.111.]111", "10.10.10.]]]10",
# "example[.com"); refang() leaves these alone because in a single value they are ambiguous.
_LOOSE_DOT = re.compile(
    r"(?<=\w)[\[\]\(\)]{1,3}\.[\[\]\(\)]{0,3}(?=\w)|(?<=\w)\.[\[\]\(\)]{1,3}(?=\w)"
)
# "http__example.com", "http:\\example.com"
_LOOSE_SCHEME = re.compile(r"\b(https?|ftps?|sftp)(?::?__|:\\\\)(?=\w)", re.IGNORECASE)
# "user at example[dot]com": a lower-case "at" only counts when the domain after it is defanged.
_LOOSE_AT = re.compile(
    r"(?<=[\w.+-])\s+(?:at|At|AT)\s+"
    r"(?=[\w-]+(?:\s*[\[\(\{]\s*(?:dot|\.)\s*[\]\)\}]\s*|\s+(?:DOT|dot)\s+)\w)"
)


def _refang_for_extraction(text: str) -> str:
    text = _LOOSE_AT.sub("@", text)
    text = refang(text)
    text = _LOOSE_SCHEME.sub(r"\1://", text)
    return _LOOSE_DOT.sub(".", text)


# --- patterns ---------------------------------------------------------------------------------
_URL = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://"
    r"(?:\[[0-9A-Fa-f:.%\w]+\])?[^\s\"'<>`{}|\\^\[\]\u201c\u201d\u2018\u2019\uff1e\uff1c]*"
)
_URL_TRAILING = ".,;:!?'\"*"
_BRACKET_PAIRS = {")": "(", "]": "[", "}": "{"}

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_.%+])[A-Za-z0-9_][A-Za-z0-9_.%+-]*@"
    r"(?:[\w-]+\.)+[\w-]+"
)
_REGISTRY = re.compile(
    rf"(?<![\w])<?(?:{_HIVES})>?(?:\\(?:(?!\s+<?(?:{_HIVES})>?\\)[^\\\r\n\t\"“”'|])*)+",
    re.IGNORECASE,
)
_SSDEEP = re.compile(r"(?<![\w:/+])\d{1,10}:[A-Za-z0-9/+]{3,}:[A-Za-z0-9/+]+")
_IPV4_BODY = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
_CIDR = re.compile(
    rf"(?<![\d.])(?:{_IPV4_BODY}/\d{{1,2}}|(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}[0-9A-Fa-f]{{0,4}}/\d{{1,3}})(?![\d/])"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})"
    r"(?:%[A-Za-z0-9_.-]+)?(?![\w:])"
)
_IPV4 = re.compile(rf"(?<!\d){_IPV4_BODY}(?!\d|\.\d)")
_MAC = re.compile(
    r"(?<![\w:.-])(?:[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:.-])"
)
# Hex runs glued to letters still count (iocextract's reading): "words<sha1>words" is common
# in pasted tool output. A run of the wrong length is not a hash.
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])(?:0[xX])?[0-9A-Fa-f]{32,128}(?![0-9A-Fa-f])")
_CVE = re.compile(r"(?<![\w-])CVE[-\s]?(\d{4})[-\s](\d{4,7})(?!\d)", re.IGNORECASE)
_ASN = re.compile(
    r"(?<![\w])(?:(?:AS|as|As)(\d{1,10})|(?:ASN|asn|Asn)\s?(\d{1,10})|AS\s(\d{1,10}))(?![\w])"
)
_ATTACK = re.compile(r"(?<![\w.])T\d{4}(?:\.\d{3})?(?!\w|\.\d)")
_BITCOIN = re.compile(
    r"(?<![\w])(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|bc1[02-9ac-hj-np-z]{11,71})(?![\w])"
)
_FILENAME = re.compile(r"(?<![\w.\\/-])[\w-]+(?:\.[\w-]+)*\.([A-Za-z0-9]{1,8})(?![\w-]|\.\w)")
_DOMAIN = re.compile(r"(?<![\w.@-])(?:[\w-]{1,63}\.)+[\w-]{2,63}(?![\w-]|\.\w)")


def _trim_url(url: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets from the end of a URL."""
    while url:
        last = url[-1]
        if last in _URL_TRAILING:
            url = url[:-1]
        elif last in _BRACKET_PAIRS and url.count(last) > url.count(_BRACKET_PAIRS[last]):
            url = url[:-1]
        else:
            break
    return url


class _Scanner:
    """Runs the patterns over a working copy of the text, blanking what has been claimed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: dict[tuple[str, str], Indicator] = {}

    def add(self, kind: str, value: str | None) -> bool:
        if value is None:
            return False
        key = (kind, value)
        if key not in self.found:
            self.found[key] = Indicator(kind, value, indicator_tags(kind, value))
        return True

    def blank(self, start: int, end: int) -> None:
        self.text = self.text[:start] + " " * (end - start) + self.text[end:]

    def scan(
        self, pattern: re.Pattern[str], handle: Callable[[re.Match[str]], tuple[int, int] | None]
    ) -> None:
        spans = [span for match in pattern.finditer(self.text) if (span := handle(match))]
        for start, end in spans:
            self.blank(start, end)


def _url_host_indicator(url: str) -> tuple[str, str] | None:
    netloc = url.split("://", 1)[1]
    netloc = re.split(r"[/?#]", netloc, maxsplit=1)[0].rpartition("@")[2]
    if netloc.startswith("["):
        host = netloc[1:].partition("]")[0]
        return ("ipv6", host) if host else None
    host = netloc.rpartition(":")[0] if re.search(r":\d+$", netloc) else netloc
    if _n.normalize_ipv4(host):
        return "ipv4", host
    return "domain", host


def _handle_url(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        raw = _trim_url(match.group(0))
        canonical = _n.normalize_url(raw)
        if canonical is None:
            return None
        scanner.add("url", canonical)
        host = _url_host_indicator(canonical)
        if host is not None:
            scanner.add(host[0], _n.NORMALIZERS[host[0]](host[1]))
        return match.start(), match.start() + len(raw)

    return handle


def _simple(
    scanner: _Scanner, kind: str, normalizer: Callable[[str], str | None]
) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        return match.span() if scanner.add(kind, normalizer(match.group(0))) else None

    return handle


def _handle_email(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        raw = match.group(0).rstrip(".-")
        if scanner.add("email", _n.normalize_email(raw)):
            return match.start(), match.start() + len(raw)
        return None

    return handle


def _handle_registry(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        raw = match.group(0)
        head, _, tail = raw.rpartition("\\")
        # Spaces are allowed inside a key's components, but the last component ends at the
        # first space: "...\ConsoleIME on the host".
        tail = re.split(r"\s", tail, maxsplit=1)[0].rstrip(".,;:)")
        key = f"{head}\\{tail}" if tail else head
        if scanner.add("registry_key", _n.normalize_registry_key(key)):
            return match.start(), match.start() + len(key)
        return None

    return handle


def _handle_hash(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    kinds = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}

    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        digits = match.group(0)
        digits = digits[2:] if digits[:2].lower() == "0x" else digits
        kind = kinds.get(len(digits))
        if kind is None:
            return None
        scanner.add(kind, digits.lower())
        return match.span()

    return handle


def _handle_cve(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        scanner.add("cve", f"CVE-{match.group(1)}-{match.group(2)}")
        return match.span()

    return handle


def _handle_asn(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        digits = next(group for group in match.groups() if group)
        return match.span() if scanner.add("asn", _n.normalize_asn(f"AS{digits}")) else None

    return handle


def _handle_filename(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        if match.group(1).lower() not in _n.FILE_EXTENSIONS:
            return None
        return match.span() if scanner.add("filename", match.group(0)) else None

    return handle


def _steps(scanner: _Scanner) -> Iterator[tuple[re.Pattern[str], Callable[..., object]]]:
    # Order matters: containers first (URL, e-mail, registry key), then the types whose text
    # could be mistaken for another (ssdeep before IPv6, CIDR before addresses, IPv6 before
    # IPv4 for "::ffff:a.b.c.d"), names last.
    yield _URL, _handle_url(scanner)
    yield _EMAIL, _handle_email(scanner)
    yield _REGISTRY, _handle_registry(scanner)
    yield _SSDEEP, _simple(scanner, "ssdeep", _n.normalize_ssdeep)
    yield _CIDR, _simple(scanner, "cidr", _n.normalize_cidr)
    yield _IPV6, _simple(scanner, "ipv6", _n.normalize_ipv6)
    yield _IPV4, _handle_ipv4(scanner)
    yield _MAC, _simple(scanner, "mac", _n.normalize_mac)
    yield _HEX_RUN, _handle_hash(scanner)
    yield _CVE, _handle_cve(scanner)
    yield _ASN, _handle_asn(scanner)
    yield _ATTACK, _simple(scanner, "attack_technique", _n.normalize_attack_technique)
    yield _BITCOIN, _simple(scanner, "bitcoin", _n.normalize_bitcoin)
    yield _FILENAME, _handle_filename(scanner)
    yield _DOMAIN, _simple(scanner, "domain", _n.normalize_domain)


def _handle_ipv4(scanner: _Scanner) -> Callable[[re.Match[str]], tuple[int, int] | None]:
    def handle(match: re.Match[str]) -> tuple[int, int] | None:
        start = match.start()
        before = scanner.text[max(0, start - 2) : start]
        # "x.1.2.3.4" is a longer dotted run, not an address; "..1.2.3.4" is punctuation.
        if before.endswith(".") and before != "..":
            return None
        return match.span() if scanner.add("ipv4", _n.normalize_ipv4(match.group(0))) else None

    return handle


def extract_indicators(text: str) -> list[Indicator]:
    """Return the distinct indicators found in `text`, in order of first appearance per type.

    Args:
        text: free text, possibly defanged, possibly HTML or Markdown.
    """
    scanner = _Scanner(_refang_for_extraction(text))
    for pattern, handle in _steps(scanner):
        scanner.scan(pattern, handle)  # type: ignore[arg-type]
    return list(scanner.found.values())
