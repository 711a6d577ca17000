"""Behaviour of indicators.refang."""

from __future__ import annotations

import pytest

from phantom_spire.cti.indicators import refang


@pytest.mark.parametrize(
    ("defanged", "fanged"),
    [
        ("hxxp://example[.]com/a", "http://example.com/a"),
        ("hXXps://example[.]com", "https://example.com"),
        ("fxp://files.example[.]org", "ftp://files.example.org"),
        ("https[:]//example.org", "https://example.org"),
        ("hxxps[://]example[.]com", "https://example.com"),
        ("192.168{.}1{.}1", "192.168.1.1"),
        ("example(dot)com", "example.com"),
        ("example<.>com", "example.com"),
        ("www\\.example\\.com", "www.example.com"),
        ("user[at]example[.]com", "user@example.com"),
        ("user(at)example.com", "user@example.com"),
        ("http://example.com[/]path", "http://example.com/path"),
        ("1[.]2[.]3[.]4", "1.2.3.4"),
    ],
)
def test_refang_restores_common_defang_styles(defanged: str, fanged: str) -> None:
    assert refang(defanged) == fanged


@pytest.mark.parametrize(
    "text",
    [
        "example.com",
        "http://accounts.dot-example.online",
        "WWW.MDOT.EXAMPLE.VIP/pay",
        "domain (www.example.com).",
        "LOOK AT THIS",
        "HKCR\\.exe\\shell",
        "",
    ],
)
def test_refang_leaves_text_without_defanging_unchanged(text: str) -> None:
    assert refang(text) == text


def test_refang_keeps_surrounding_prose_and_markup() -> None:
    text = "<div>C2 at hxxp://zeplin[.]example[.]com/inter[.]php today</div>"
    assert refang(text) == "<div>C2 at http://zeplin.example.com/inter.php today</div>"


def test_refang_does_not_turn_out_of_range_comma_numbers_into_an_address() -> None:
    assert refang("300,1,1,1") == "300,1,1,1"
