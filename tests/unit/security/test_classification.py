"""TLP 2.0 markings, classification levels, clearance checks and the strictest marking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phantom_spire.security import (
    DEFAULT_SCHEME,
    ClassificationError,
    ClassificationScheme,
    Level,
    Marking,
    Tlp,
    can_see,
    parse_level,
    parse_tlp,
    strictest,
)

UNCLASSIFIED, CONFIDENTIAL, SECRET, TOP_SECRET = DEFAULT_SCHEME.levels


def test_tlp_markings_are_ordered_from_clear_to_red() -> None:
    assert Tlp.CLEAR < Tlp.GREEN < Tlp.AMBER < Tlp.AMBER_STRICT < Tlp.RED
    assert sorted([Tlp.RED, Tlp.CLEAR, Tlp.AMBER_STRICT, Tlp.AMBER]) == [
        Tlp.CLEAR,
        Tlp.AMBER,
        Tlp.AMBER_STRICT,
        Tlp.RED,
    ]
    assert Tlp.RED >= Tlp.RED and not Tlp.GREEN > Tlp.AMBER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TLP:AMBER+STRICT", Tlp.AMBER_STRICT),
        ("amber+strict", Tlp.AMBER_STRICT),
        ("amber_strict", Tlp.AMBER_STRICT),
        ("  tlp:red ", Tlp.RED),
        ("TLP-GREEN", Tlp.GREEN),
        ("clear", Tlp.CLEAR),
        ("TLP:WHITE", Tlp.CLEAR),
    ],
)
def test_tlp_parses_the_ways_people_write_markings(text: str, expected: Tlp) -> None:
    assert parse_tlp(text) is expected


def test_tlp_label_carries_the_prefix_and_value_does_not() -> None:
    assert Tlp.AMBER_STRICT.label == "TLP:AMBER+STRICT"
    assert str(Tlp.RED) == "TLP:RED"
    assert Tlp.AMBER_STRICT.value == "AMBER+STRICT"


@pytest.mark.parametrize("bad", ["BLUE", "", "TLP:", "AMBER+", "REDD"])
def test_unknown_tlp_marking_names_the_value_and_the_allowed_ones(bad: str) -> None:
    with pytest.raises(ClassificationError) as caught:
        parse_tlp(bad)
    message = str(caught.value)
    assert repr(bad) in message
    assert "TLP:CLEAR" in message and "TLP:AMBER+STRICT" in message and "TLP:RED" in message


def test_tlp_parse_refuses_a_non_string_and_says_what_it_got() -> None:
    with pytest.raises(ClassificationError, match=r"int 3"):
        parse_tlp(3)


def test_tlp_does_not_compare_with_plain_strings() -> None:
    with pytest.raises(TypeError):
        _ = Tlp.RED < "GREEN"


def test_default_scheme_orders_unclassified_to_top_secret() -> None:
    assert [level.name for level in DEFAULT_SCHEME.levels] == [
        "UNCLASSIFIED",
        "CONFIDENTIAL",
        "SECRET",
        "TOP SECRET",
    ]
    assert UNCLASSIFIED < CONFIDENTIAL < SECRET < TOP_SECRET
    assert DEFAULT_SCHEME.lowest == UNCLASSIFIED and DEFAULT_SCHEME.highest == TOP_SECRET


@pytest.mark.parametrize(
    "text", ["TOP SECRET", "top secret", "Top_Secret", "top-secret", " TOP  SECRET "]
)
def test_level_names_ignore_case_and_separators(text: str) -> None:
    assert parse_level(text) == TOP_SECRET


def test_unknown_level_names_the_value_and_the_levels_of_the_scheme() -> None:
    with pytest.raises(ClassificationError) as caught:
        parse_level("COSMIC")
    assert "'COSMIC'" in str(caught.value)
    assert "UNCLASSIFIED, CONFIDENTIAL, SECRET, TOP SECRET" in str(caught.value)


def test_level_parse_refuses_a_non_string() -> None:
    with pytest.raises(ClassificationError, match=r"NoneType None"):
        parse_level(None)


def test_a_configured_scheme_replaces_the_default_levels() -> None:
    scheme = ClassificationScheme.from_string("public, internal , restricted")

    assert scheme.names == ("PUBLIC", "INTERNAL", "RESTRICTED")
    assert scheme.parse("internal") < scheme.parse("Restricted")
    with pytest.raises(ClassificationError, match=r"'SECRET'.*PUBLIC, INTERNAL, RESTRICTED"):
        scheme.parse("SECRET")


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ((), "at least one level"),
        (("A", ""), "non-empty strings"),
        (("LOW", "HIGH", "high"), "['HIGH']"),
        (("TOP_SECRET", "top secret"), "['TOP SECRET']"),
        (("A", 1), "non-empty strings"),
    ],
)
def test_a_malformed_scheme_is_refused_with_the_offending_names(
    names: tuple[object, ...], fragment: str
) -> None:
    with pytest.raises(ClassificationError) as caught:
        ClassificationScheme(names)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


def test_a_scheme_from_a_bare_string_is_refused_rather_than_split_into_letters() -> None:
    with pytest.raises(ClassificationError, match=r"sequence of names"):
        ClassificationScheme("SECRET")  # type: ignore[arg-type]


def test_levels_of_two_schemes_do_not_compare() -> None:
    other = ClassificationScheme(("UNCLASSIFIED", "SECRET"))
    with pytest.raises(TypeError, match=r"scheme"):
        _ = other.parse("SECRET") < SECRET
    with pytest.raises(TypeError):
        can_see(other.parse("SECRET"), SECRET)
    with pytest.raises(ClassificationError, match=r"belongs to scheme"):
        DEFAULT_SCHEME.parse(other.parse("SECRET"))


def test_same_names_in_another_scheme_are_not_the_same_level() -> None:
    other = ClassificationScheme(("UNCLASSIFIED", "SECRET"))
    assert other.parse("SECRET") != SECRET


@pytest.mark.parametrize(
    ("clearance", "level", "visible"),
    [
        (SECRET, UNCLASSIFIED, True),
        (SECRET, SECRET, True),
        (SECRET, TOP_SECRET, False),
        (UNCLASSIFIED, CONFIDENTIAL, False),
        (TOP_SECRET, TOP_SECRET, True),
    ],
)
def test_can_see_material_at_or_below_clearance_only(
    clearance: Level, level: Level, visible: bool
) -> None:
    assert can_see(clearance, level) is visible


def test_can_see_refuses_a_level_name_instead_of_a_level() -> None:
    with pytest.raises(TypeError, match=r"'SECRET'"):
        can_see(SECRET, "SECRET")  # type: ignore[arg-type]


def test_strictest_tlp_and_level_pick_the_most_restrictive() -> None:
    assert strictest(Tlp.GREEN, Tlp.AMBER_STRICT, Tlp.CLEAR) is Tlp.AMBER_STRICT
    assert strictest(CONFIDENTIAL, UNCLASSIFIED) == CONFIDENTIAL
    assert strictest(Tlp.RED) is Tlp.RED


def test_strictest_marking_combines_each_axis_separately() -> None:
    red_unclassified = Marking(Tlp.RED, UNCLASSIFIED)
    clear_secret = Marking(Tlp.CLEAR, SECRET)

    assert strictest(red_unclassified, clear_secret) == Marking(Tlp.RED, SECRET)


def test_strictest_refuses_to_mix_tlp_with_levels() -> None:
    with pytest.raises(TypeError, match=r"one kind"):
        strictest(Tlp.RED, SECRET)  # type: ignore[call-overload]


def test_marking_refuses_strings_in_place_of_parsed_values() -> None:
    with pytest.raises(ClassificationError, match=r"'RED'"):
        Marking("RED", SECRET)  # type: ignore[arg-type]


@given(
    st.lists(st.sampled_from(list(Tlp)), min_size=1),
    st.lists(st.sampled_from(DEFAULT_SCHEME.levels), min_size=1),
)
def test_output_marked_by_strictest_is_at_least_every_input(
    tlps: list[Tlp], levels: list[Level]
) -> None:
    markings = [Marking(t, lv) for t, lv in zip(tlps, levels, strict=False)]
    combined = strictest(*markings)
    for marking in markings:
        assert combined.tlp >= marking.tlp
        assert combined.level >= marking.level
    assert combined in {Marking(m.tlp, n.level) for m in markings for n in markings}
