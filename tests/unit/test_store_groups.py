"""The ``groups`` column form (otszmq.store.groups) without a database: it round-trips, and a
name's encoded form never occurs inside another set's encoding unless that set holds the name
(the substring test the listings filter by)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from otszmq.store.groups import _escape, decode_groups, encode_groups

NAMES = st.text(st.sampled_from("ab,%2C5_ "), min_size=1, max_size=6)


def test_form_is_sorted_names_between_commas():
    assert encode_groups(["Red", "Blue", "Red"]) == ",Blue,Red,"
    assert encode_groups([]) is None
    assert decode_groups(None) == [] and decode_groups(",Blue,Red,") == ["Blue", "Red"]
    assert encode_groups(["a,b", "50%"]) == ",50%25,a%2Cb,"


@given(st.lists(NAMES, max_size=5))
def test_round_trip(names):
    assert decode_groups(encode_groups(names)) == sorted(set(names))


@given(st.lists(NAMES, max_size=5), NAMES)
def test_a_name_is_found_exactly_when_the_set_holds_it(names, name):
    column = encode_groups(names) or ""
    assert ("," + _escape(name) + "," in column) == (name in names)
