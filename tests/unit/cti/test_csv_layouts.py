"""CSV feed layouts: headers, comments, delimiters, quoting, encodings, limits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from phantom_spire.cti.feeds import FeedFormatError, FeedItem, read_feed
from phantom_spire.cti.formats.csv import read_csv


def _write(tmp_path: Path, text: str, name: str = "feed.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _values(items: list[FeedItem]) -> list[tuple[str, str]]:
    return [(i.indicator.type, i.indicator.value) for i in items if i.indicator is not None]


def test_commented_header_is_used_as_in_abuse_ch_feeds(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "####\n# Feed banner\n#\n# Dateadded (UTC),URL,Host\n"
        "2019-02-13 00:34:42,http://a.example.com/x,a.example.com\n# of entries: 1\n",
    )
    items = list(read_feed(path))

    assert _values(items) == [("url", "http://a.example.com/x"), ("domain", "a.example.com")]
    assert {i.position for i in items} == {0}
    assert items[0].context["first_seen"] == "2019-02-13T00:34:42Z"


def test_semicolon_comment_lines_are_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "; list\n; more\n1.4.0.0/17 ; SBL256893\n", name="drop.txt")

    assert _values(list(read_feed(path, "csv"))) == [("cidr", "1.4.0.0/17")]


def test_type_column_types_the_indicator_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "Type,Indicator\nSHA256,not-a-hash\nDomain,evil[.]example.com\n")
    items = list(read_feed(path))

    assert items[0].kind == "rejected" and items[0].raw_type == "SHA256"
    assert _values(items) == [("domain", "evil.example.com")]


def test_several_hash_columns_each_yield_an_indicator(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "md5, sha1, sha256\n"
        "d41d8cd98f00b204e9800998ecf8427e, da39a3ee5e6b4b0d3255bfef95601890afd80709, "
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
    )

    assert [t for t, _ in _values(list(read_feed(path)))] == ["md5", "sha1", "sha256"]


def test_quoted_fields_may_span_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, 'ioc,note\n1.2.3.4,"line one\nline two"\n5.6.7.8,x\n')
    items = list(read_feed(path))

    assert [(i.position, i.indicator.value) for i in items if i.indicator] == [
        (0, "1.2.3.4"),
        (1, "5.6.7.8"),
    ]


def test_a_quote_inside_an_unquoted_field_does_not_swallow_later_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, 'ip,note\n1.2.3.4,a 5" screen\n5.6.7.8,x\n')

    assert len({i.position for i in read_feed(path)}) == 2


def test_utf8_bom_does_not_hide_the_first_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffdomain,comment\nexample.org,x\n")

    assert _values(list(read_feed(path))) == [("domain", "example.org")]


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    rows = ["ip", "note"], ["1.2.3.4", "a, b"], ["5.6.7.8", "c, d"]
    path = _write(tmp_path, "".join(delimiter.join(row) + "\n" for row in rows))

    assert _values(list(read_feed(path))) == [("ipv4", "1.2.3.4"), ("ipv4", "5.6.7.8")]


def test_headerless_list_uses_columns_that_hold_indicators(tmp_path: Path) -> None:
    path = _write(tmp_path, "8.8.8.8,google\n1.1.1.1,cloudflare\n")

    assert _values(list(read_feed(path))) == [("ipv4", "8.8.8.8"), ("ipv4", "1.1.1.1")]


def test_multi_valued_cells_yield_one_indicator_per_value(tmp_path: Path) -> None:
    path = _write(tmp_path, 'host,IP address(es),ASN(s)\nx.example.com,"1.2.3.4|5.6.7.8","1|2"\n')

    assert Counter(t for t, _ in _values(list(read_feed(path)))) == {
        "domain": 1,
        "ipv4": 2,
        "asn": 2,
    }


def test_row_with_empty_indicator_cells_is_skipped_not_dropped(tmp_path: Path) -> None:
    path = _write(tmp_path, "url,comment\n,nothing here\nhttp://x.example.com/,y\n")
    items = list(read_feed(path))

    assert [(i.position, i.kind) for i in items] == [(0, "skipped"), (1, "indicator")]


def test_header_without_indicator_column_is_a_feed_format_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "name,count\nalpha,1\n")

    with pytest.raises(FeedFormatError, match=r"no indicator column: header \['name', 'count'\]"):
        list(read_feed(path))


def test_only_comments_is_a_feed_format_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "# nothing\n# at all\n")

    with pytest.raises(FeedFormatError, match="no data rows"):
        list(read_feed(path))


def test_invalid_utf8_is_a_feed_format_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("ip,note\n1.2.3.4,caf\xe9\n".encode("latin-1"))

    with pytest.raises(FeedFormatError, match=r"latin1\.csv.*not UTF-8"):
        list(read_feed(path))


def test_an_overlong_record_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = _write(tmp_path, "ip,note\n1.2.3.4," + "x" * 5000 + "\n5.6.7.8,y\n")
    items = list(read_csv(path, max_record_chars=1000))

    assert [(i.position, i.kind) for i in items] == [(0, "rejected"), (1, "indicator")]
    assert items[0].reason is not None and "longer than 1000 characters" in items[0].reason
