"""Hostile or broken inputs are refused or handled with a clear error, in bounded memory."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest

from phantom_spire.cti.feeds import FeedFormatError, detect_format, read_feed

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<ioc xmlns="http://schemas.mandiant.com/2010/ioc"><IndicatorItem>&lol9;</IndicatorItem></ioc>
"""


def test_xml_entity_expansion_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.ioc"
    path.write_text(BILLION_LAUGHS)

    with pytest.raises(FeedFormatError, match=r"bomb\.ioc.*XML refused.*Entities"):
        list(read_feed(path))


def test_xml_external_entity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "xxe.xml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<rss><channel><item><title>&x;</title></item></channel></rss>"
    )

    with pytest.raises(FeedFormatError, match="XML refused"):
        list(read_feed(path))


def test_rss_bomb_is_refused_before_feedparser_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.rss"
    path.write_text(BILLION_LAUGHS.replace("<ioc xmlns", "<rss><x").replace("</ioc>", "</x></rss>"))

    with pytest.raises(FeedFormatError, match="XML refused"):
        list(read_feed(path, "rss"))


def test_ten_level_nested_gzip_is_refused(tmp_path: Path) -> None:
    data = b"8.8.8.8\n"
    for _ in range(10):
        data = gzip.compress(data)
    path = tmp_path / "nested.gz"
    path.write_bytes(data)

    with pytest.raises(FeedFormatError, match="nested gzip layers"):
        list(read_feed(path))
    with pytest.raises(FeedFormatError, match="nested gzip layers"):
        detect_format(path)


def test_a_single_gzip_layer_is_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "list.txt.gz"
    path.write_bytes(gzip.compress(b"# list\n8.8.8.8\nexample.com\n"))

    assert detect_format(path) == "text"
    assert [i.indicator.value for i in read_feed(path) if i.indicator] == ["8.8.8.8", "example.com"]


def test_corrupt_gzip_is_a_feed_format_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"8.8.8.8\n" * 1000)[:40])

    with pytest.raises(FeedFormatError, match="corrupt gzip"):
        list(read_feed(path))


def test_a_100_mb_csv_line_is_rejected_without_holding_it_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w") as handle:
        handle.write("ip,note\n1.2.3.4,small\n5.6.7.8,")
        chunk = "x" * (1 << 20)
        for _ in range(100):
            handle.write(chunk)
        handle.write("\n9.9.9.9,after\n")

    tracemalloc.start()
    try:
        items = list(read_feed(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [(i.position, i.kind) for i in items] == [
        (0, "indicator"),
        (1, "rejected"),
        (2, "indicator"),
    ]
    assert items[1].reason is not None and "longer than" in items[1].reason
    assert peak < 32 * 1024 * 1024


@pytest.mark.parametrize("name", ["bad.csv", "bad.json", "bad.txt"])
def test_invalid_utf8_is_refused_with_the_offset(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"ip,note\n1.2.3.4,caf\xe9 \xff\xfe\n")

    with pytest.raises(FeedFormatError, match=r"not UTF-8 text \(byte 0xe9 at offset 19\)"):
        list(read_feed(path))


def test_invalid_utf8_after_the_sniffed_head_is_refused_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    path.write_bytes(b"8.8.8.8\n" * 20_000 + b"caf\xe9\n")

    with pytest.raises(FeedFormatError, match=r"not UTF-8 text after line 19\d{3}"):
        list(read_feed(path))
