"""Validate and canonicalise one value of a known indicator type.

Every ``normalize_<type>`` function takes an already refanged, stripped value and returns the
canonical form, or None when the value is not valid for that type. The conventions (hash case,
RFC 5952 IPv6, A-label domains, URL host case ...) are those of the shared IOC cases README.

Written by hand on top of ``ipaddress``, ``idna`` and the public suffix list: no maintained
library covers the set of CTI types (ssdeep, ATT&CK ids, registry keys, bitcoin addresses).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable

from phantom_spire.cti.domains import normalize_domain

__all__ = [
    "FILE_EXTENSIONS",
    "NORMALIZERS",
    "TYPES",
    "address_tags",
    "normalize_asn",
    "normalize_attack_technique",
    "normalize_bitcoin",
    "normalize_cidr",
    "normalize_cve",
    "normalize_domain",
    "normalize_email",
    "normalize_filename",
    "normalize_hash",
    "normalize_ipv4",
    "normalize_ipv6",
    "normalize_mac",
    "normalize_registry_key",
    "normalize_ssdeep",
    "normalize_url",
]

TYPES: tuple[str, ...] = (
    "ipv4",
    "ipv6",
    "cidr",
    "domain",
    "url",
    "email",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "ssdeep",
    "cve",
    "asn",
    "bitcoin",
    "attack_technique",
    "filename",
    "registry_key",
    "mac",
)

_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_HEX = re.compile(r"^(?:0[xX])?([0-9a-fA-F]+)$")


def normalize_hash(value: str, kind: str) -> str | None:
    """Return a lower-case hex digest of the length `kind` needs (md5, sha1, sha256, sha512)."""
    match = _HEX.match(value)
    if not match or len(match.group(1)) != _HASH_LENGTHS[kind]:
        return None
    return match.group(1).lower()


_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def normalize_ipv4(value: str) -> str | None:
    """Return dotted-decimal IPv4; leading zeros are read as decimal and dropped."""
    match = _IPV4.match(value)
    if not match:
        return None
    octets = [int(part) for part in match.groups()]
    if any(octet > 255 for octet in octets):
        return None
    return ".".join(str(octet) for octet in octets)


_IPV6_CHARS = re.compile(r"^[0-9a-fA-F:.]+(?:%[\w.-]+)?$")


def normalize_ipv6(value: str) -> str | None:
    """Return RFC 5952 IPv6 (IPv4-mapped kept as ``::ffff:a.b.c.d``; a zone id is kept)."""
    if ":" not in value or not _IPV6_CHARS.match(value):
        return None
    address, _, zone = value.partition("%")
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    text = f"::ffff:{parsed.ipv4_mapped}" if parsed.ipv4_mapped else str(parsed)
    return f"{text}%{zone}" if zone else text


def normalize_cidr(value: str) -> str | None:
    """Return ``address/prefix`` with host bits kept as written and IPv6 compressed."""
    address, sep, prefix = value.partition("/")
    if not sep or not prefix.isdigit() or len(prefix) > 3:
        return None
    ipv4 = normalize_ipv4(address)
    if ipv4 is not None:
        return f"{ipv4}/{int(prefix)}" if int(prefix) <= 32 else None
    ipv6 = normalize_ipv6(address)
    if ipv6 is not None and "%" not in ipv6:
        return f"{ipv6}/{int(prefix)}" if int(prefix) <= 128 else None
    return None


_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#\\]*)(.*)$", re.DOTALL)
_SCHEMELESS_URL = re.compile(r"^([^/?#\\:@\s]+(?::\d{1,5})?)([/?#].*)$", re.DOTALL)
_PORT = re.compile(r"^\d{1,5}$")


def _normalize_host(host: str) -> str | None:
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        ipv6 = normalize_ipv6(host[1:-1])
        return f"[{ipv6}]" if ipv6 else None
    return normalize_ipv4(host) or normalize_domain(host)


def _normalize_netloc(netloc: str) -> str | None:
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = hostport, ""
    if not hostport.endswith("]") and ":" in hostport:
        host, _, port = hostport.rpartition(":")
        if not _PORT.match(port) or int(port) > 65535:
            return None
    canonical_host = _normalize_host(host)
    if canonical_host is None:
        return None
    return f"{userinfo}{at}{canonical_host}{':' if port else ''}{port}"


def normalize_url(value: str, *, require_scheme: bool = True) -> str | None:
    """Return the URL with scheme and host lower-cased, everything else as written.

    Args:
        value: a candidate URL.
        require_scheme: when False, ``host/path`` without a scheme is accepted too (feeds that
            label a column "URL" often omit the scheme); it stays without one.
    """
    if not value or any(c.isspace() for c in value):
        return None
    match = _URL.match(value)
    if match:
        scheme, netloc, rest = match.groups()
        canonical_netloc = _normalize_netloc(netloc)
        if canonical_netloc is None:
            return None
        return f"{scheme.lower()}://{canonical_netloc}{rest}"
    if require_scheme:
        return None
    match = _SCHEMELESS_URL.match(value)
    if not match:
        return None
    canonical_netloc = _normalize_netloc(match.group(1))
    return f"{canonical_netloc}{match.group(2)}" if canonical_netloc else None


_EMAIL_LOCAL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$"
)


def normalize_email(value: str) -> str | None:
    """Return ``local@domain`` with the domain canonical and the local part as written."""
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > 64 or not _EMAIL_LOCAL.match(local):
        return None
    if domain.startswith("[") and domain.endswith("]"):
        literal = normalize_ipv4(domain[1:-1])
        return f"{local}@[{literal}]" if literal else None
    canonical = normalize_domain(domain)
    return f"{local}@{canonical}" if canonical else None


_MAC_SEPARATED = re.compile(r"^[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$")
_MAC_DOTTED = re.compile(r"^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$")
_MAC_BARE = re.compile(r"^[0-9A-Fa-f]{12}$")


def normalize_mac(value: str, *, allow_bare: bool = False) -> str | None:
    """Return a lower-case colon-separated MAC-48 address.

    Args:
        value: ``aa:bb:..``, ``aa-bb-..`` or Cisco ``aabb.ccdd.eeff``.
        allow_bare: accept twelve hex digits without separators (only when a feed labels the
            value a MAC address: on its own it is indistinguishable from other hex).
    """
    if _MAC_SEPARATED.match(value) or _MAC_DOTTED.match(value):
        digits = re.sub(r"[^0-9A-Fa-f]", "", value)
    elif allow_bare and _MAC_BARE.match(value):
        digits = value
    else:
        return None
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


_SSDEEP = re.compile(r"^(\d{1,10}):([A-Za-z0-9/+]*):([A-Za-z0-9/+]*)(?:,\"[^\"]*\")?$")


def normalize_ssdeep(value: str) -> str | None:
    """Return the ssdeep fuzzy hash as written, if it is one.

    The block size must be 3 * 2**n, and the first chunk at least three characters, so that a
    time of day such as ``12:30:45`` is not taken for a fuzzy hash. ``3::`` (the empty file) is
    accepted.
    """
    match = _SSDEEP.match(value)
    if not match:
        return None
    block_size, first, second = int(match.group(1)), match.group(2), match.group(3)
    if block_size < 3 or block_size % 3 or (block_size // 3) & (block_size // 3 - 1):
        return None
    if (first or second) and len(first) < 3:
        return None
    return value


_CVE = re.compile(r"^CVE-(\d{4})-(\d{4,})$", re.IGNORECASE)


def normalize_cve(value: str) -> str | None:
    """Return ``CVE-YYYY-NNNN`` in upper case."""
    match = _CVE.match(value)
    return f"CVE-{match.group(1)}-{match.group(2)}" if match else None


_ASN = re.compile(r"^AS(?:N)?\s?(\d{1,10})$", re.IGNORECASE)


def normalize_asn(value: str, *, allow_bare: bool = False) -> str | None:
    """Return ``AS<digits>``.

    Args:
        value: ``AS1234``, ``asn1234``, ``ASN 1234``.
        allow_bare: accept plain digits (only when a feed labels the value an AS number).
    """
    match = _ASN.match(value)
    digits = match.group(1) if match else (value if allow_bare and value.isdigit() else None)
    if digits is None or len(digits) > 10 or int(digits) > 4_294_967_295:
        return None
    return f"AS{int(digits)}"


_ATTACK = re.compile(r"^T(\d{4})(?:\.(\d{3}))?$", re.IGNORECASE)


def normalize_attack_technique(value: str) -> str | None:
    """Return an ATT&CK technique id ``Tnnnn`` or ``Tnnnn.nnn`` (tactics ``TAnnnn`` are not)."""
    match = _ATTACK.match(value)
    if not match:
        return None
    return f"T{match.group(1)}" + (f".{match.group(2)}" if match.group(2) else "")


_HIVES = (
    "HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_USERS|HKEY_CURRENT_CONFIG|"
    "HKEY_PERFORMANCE_DATA|HKLM|HKCU|HKCR|HKU|HKCC"
)
_REGISTRY = re.compile(rf"^<?({_HIVES})>?(\\.*)?$", re.IGNORECASE | re.DOTALL)


def normalize_registry_key(value: str, *, allow_hive_only: bool = False) -> str | None:
    r"""Return the key as written without ``<HKCU>`` brackets or a trailing backslash.

    Args:
        value: e.g. ``HKLM\Software\Microsoft``.
        allow_hive_only: accept a bare hive name (only when a feed labels the value a key).
    """
    match = _REGISTRY.match(value)
    if not match or "\n" in value or "\r" in value:
        return None
    hive, path = match.group(1), (match.group(2) or "").rstrip("\\")
    if not path and not allow_hive_only:
        return None
    return f"{hive}{path}"


_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58 = re.compile(r"^[13][1-9A-HJ-NP-Za-km-z]{25,34}$")
_BECH32_ALPHABET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32 = re.compile(r"^(bc|tb)1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{11,71}$")
_BECH32_CONST, _BECH32M_CONST = 1, 0x2BC830A3


def _base58check_valid(address: str) -> bool:
    number = 0
    for char in address:
        number = number * 58 + _BASE58_ALPHABET.index(char)
    leading_zeros = len(address) - len(address.lstrip("1"))
    raw = b"\x00" * leading_zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")
    if len(raw) != 25:
        return False
    checksum = hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4]
    return checksum == raw[-4:]


def _bech32_polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(generator):
            checksum ^= gen if (top >> i) & 1 else 0
    return checksum


def _bech32_valid(address: str) -> bool:
    hrp, _, data = address.rpartition("1")
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values = expanded + [_BECH32_ALPHABET.index(c) for c in data]
    witness_version = _BECH32_ALPHABET.index(data[0])
    expected = _BECH32_CONST if witness_version == 0 else _BECH32M_CONST
    return _bech32_polymod(values) == expected


def normalize_bitcoin(value: str) -> str | None:
    """Return a Bitcoin address as written if its checksum is valid (base58check or bech32/m)."""
    if _BASE58.match(value):
        return value if _base58check_valid(value) else None
    if _BECH32.match(value.lower()) and (value.islower() or value.isupper()):
        return value if _bech32_valid(value.lower()) else None
    return None


# Extensions that decide "file name" over "domain" when a value could be either (``.py`` is
# also Paraguay's TLD, ``.zip`` and ``.mov`` are gTLDs). Ambiguous extensions that are more often
# real domains in feeds (.app, .so, .pl, .md, .sh) are left out.
FILE_EXTENSIONS: frozenset[str] = frozenset(
    """
    exe dll sys scr bat cmd com_ ps1 psm1 psd1 vbs vbe js jse wsf wsh hta lnk msi msp jar class
    doc docx docm dot dotm xls xlsx xlsm xlsb xlt xltm ppt pptx pptm rtf pdf txt log csv tsv
    zip rar 7z gz tgz tar bz2 xz cab iso img vhd vhdx py pyc pyw elf bin dat db sqlite tmp ini
    cfg conf xml json yaml yml html htm php asp aspx jsp jspx cgi apk ipa dmg pkg dylib ocx cpl
    drv h c cpp hpp cs lib tlb pem crt cer der pfx p12 png jpg jpeg gif bmp ico svg mp3 mp4 avi
    mov wav lock enc crypt locked one iqy slk chm msc reg inf job dmp evtx pcap pcapng swf
    """.split()
)
_FILENAME = re.compile(r"^[^\\/:*?\"<>|\x00-\x1f]{1,255}\.([A-Za-z0-9]{1,8})$")


def normalize_filename(value: str, *, labelled: bool = False) -> str | None:
    """Return a file name (or path) as written.

    Args:
        value: a candidate file name.
        labelled: the feed says it is a file name; then any single-line name or path is
            accepted, otherwise it must end in a known file extension (see FILE_EXTENSIONS).
    """
    if not value or len(value) > 4096 or any(ord(c) < 32 for c in value):
        return None
    if labelled:
        return value
    match = _FILENAME.match(value)
    if not match or match.group(1).lower() not in FILE_EXTENSIONS:
        return None
    return value


_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def address_tags(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, ...]:
    """Return the special-use tags of an address: private, loopback, link_local, multicast, reserved.

    ``private`` is RFC 1918, RFC 6598 shared space and IPv6 unique-local; any other address
    that is not globally reachable (documentation, benchmarking, unspecified, "this network",
    240.0.0.0/4 ...) is ``reserved`` unless a more specific tag applies. IPv4-mapped IPv6
    addresses are tagged like the IPv4 address they carry.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    tags: list[str] = []
    if any(
        address in network for network in _PRIVATE_NETWORKS if network.version == address.version
    ):
        tags.append("private")
    if address.is_loopback:
        tags.append("loopback")
    if address.is_link_local:
        tags.append("link_local")
    if address.is_multicast:
        tags.append("multicast")
    not_global = address.is_private or address.is_reserved or address.is_unspecified
    if not tags and not_global:
        tags.append("reserved")
    return tuple(tags)


def _hash_normalizer(kind: str) -> Callable[[str], str | None]:
    return lambda value: normalize_hash(value, kind)


NORMALIZERS: dict[str, Callable[[str], str | None]] = {
    "url": normalize_url,
    "email": normalize_email,
    "cidr": normalize_cidr,
    "ipv4": normalize_ipv4,
    "ipv6": normalize_ipv6,
    "mac": normalize_mac,
    "md5": _hash_normalizer("md5"),
    "sha1": _hash_normalizer("sha1"),
    "sha256": _hash_normalizer("sha256"),
    "sha512": _hash_normalizer("sha512"),
    "ssdeep": normalize_ssdeep,
    "cve": normalize_cve,
    "attack_technique": normalize_attack_technique,
    "asn": normalize_asn,
    "registry_key": normalize_registry_key,
    "bitcoin": normalize_bitcoin,
    "filename": normalize_filename,
    "domain": normalize_domain,
}
"""Classification order: the first normaliser that accepts a value decides its type."""
