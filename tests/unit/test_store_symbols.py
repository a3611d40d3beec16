"""Unit tests of the MIL-STD-2525C SIDC derived from CoT types (otszmq.store.symbols)."""

from __future__ import annotations

import pytest

from otszmq.store.symbols import AFFILIATIONS, BATTLE_DIMENSIONS, symbol_from_type


@pytest.mark.parametrize(("cot_type", "sidc", "affiliation", "dimension"), [
    ("a-f-G-U-C-I", "SFGPUCI--------", "friend", "ground"),
    ("a-h-A", "SHAP-----------", "hostile", "air"),
    ("a-u-G", "SUGP-----------", "unknown", "ground"),
    ("a-n-S", "SNSP-----------", "neutral", "sea surface"),
    ("a-f-G-E-V-A-T", "SFGPEVAT-------", "friend", "ground"),
    ("a-f-A-M-F-Q", "SFAPMFQ--------", "friend", "air"),
    ("a-s-U", "SSUP-----------", "suspect", "subsurface"),
    ("a-j-F", "SJFP-----------", "joker", "special operations forces"),
    ("a-p-P", "SPPP-----------", "pending", "space"),
    ("a-f-G-U-C-I-Z-Z", "SFGPUCIZZ------", "friend", "ground"),  # six function letters
])
def test_atom_types_give_a_15_character_sidc(cot_type, sidc, affiliation, dimension):
    symbol = symbol_from_type(cot_type)
    assert symbol is not None
    assert symbol.sidc == sidc
    assert len(symbol.sidc) == 15
    assert (symbol.affiliation, symbol.battle_dimension) == (affiliation, dimension)


def test_every_affiliation_and_dimension_letter_maps_through():
    for letter, name in AFFILIATIONS.items():
        for dimension, dimension_name in BATTLE_DIMENSIONS.items():
            symbol = symbol_from_type(f"a-{letter}-{dimension}")
            assert symbol is not None
            assert symbol.sidc[1:3] == letter.upper() + dimension
            assert (symbol.affiliation, symbol.battle_dimension) == (name, dimension_name)


@pytest.mark.parametrize("cot_type", [
    "b-m-p-s-m",  # spot marker: not an atom
    "u-d-r",
    "a-f",  # no battle dimension
    "a",
    "",
    "a-x-G",  # unknown affiliation
    "a-f-Q",  # unknown dimension
    "a-f-G-U-C-I-Z-Z-Z-Z",  # seven function letters do not fit
    "a-f-G-é",
    "a-f-G-U-?",
])
def test_non_atoms_and_junk_have_no_sidc(cot_type):
    assert symbol_from_type(cot_type) is None
