"""MIL-STD-2525C symbol codes (SIDC) derived from CoT types, for the markers table.

A CoT "atom" type reads like a 2525 hierarchy: ``a-f-G-U-C-I`` is an atom (``a``), friendly
(``f``), ground (``G``), and the function path ``U-C-I`` (unit, combat, infantry). A 2525C SIDC
is 15 characters::

    position  1  coding scheme     S (warfighting: what CoT atoms describe)
              2  affiliation       the CoT affiliation letter, upper-cased (F H U N P A S J K O)
              3  battle dimension  the CoT dimension letter (P A G S U F X Z)
              4  status            P (present; CoT has no "anticipated")
            5-10 function id       the remaining atoms joined, '-' padded to 6
           11-15 modifiers, country, order of battle: '-----' (CoT does not carry them)

so ``a-f-G-U-C-I`` gives ``SFGPUCI--------`` and ``a-h-A`` gives ``SHAP-----------``. Types that
are not atoms (``b-m-p-s-m`` spot markers, drawings) have no SIDC: their icon is the
``usericon`` iconset path.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["Symbol", "symbol_from_type"]

AFFILIATIONS: Final = {
    "f": "friend", "h": "hostile", "u": "unknown", "n": "neutral", "p": "pending",
    "a": "assumed friend", "s": "suspect", "j": "joker", "k": "faker", "o": "none",
}
BATTLE_DIMENSIONS: Final = {
    "P": "space", "A": "air", "G": "ground", "S": "sea surface", "U": "subsurface",
    "F": "special operations forces", "X": "other", "Z": "unknown",
}
_FUNCTION_LENGTH: Final = 6
_TAIL: Final = "-----"


class Symbol(NamedTuple):
    sidc: str  # 15 characters
    affiliation: str  # a name from AFFILIATIONS
    battle_dimension: str  # a name from BATTLE_DIMENSIONS


def symbol_from_type(cot_type: str) -> Symbol | None:
    """The 2525C symbol of an atom type (``a-...``), or None for anything else."""
    atoms = cot_type.split("-")
    if len(atoms) < 3 or atoms[0] != "a":
        return None
    affiliation = atoms[1].lower()
    dimension = atoms[2].upper()
    if affiliation not in AFFILIATIONS or dimension not in BATTLE_DIMENSIONS:
        return None
    function = "".join(atoms[3:]).upper()
    # Function atoms are single letters or digits in 2525's hierarchy; anything longer than the
    # six positions, or not alphanumeric, is not a 2525 path (a private extension).
    plain = not function or (function.isascii() and function.isalnum())
    if len(function) > _FUNCTION_LENGTH or not plain:
        return None
    sidc = f"S{affiliation.upper()}{dimension}P{function.ljust(_FUNCTION_LENGTH, '-')}{_TAIL}"
    return Symbol(sidc, AFFILIATIONS[affiliation], BATTLE_DIMENSIONS[dimension])
