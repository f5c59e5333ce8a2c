"""Unicode's confusable skeleton (UTS #39, section 4): strings that look alike map to one string.

``skeleton("аdmin")`` (with a Cyrillic а) is ``skeleton("admin")``. It follows UTS #39 as of
Unicode 15.1: NFD, drop default-ignorable code points, replace each character by its prototype
from Unicode's ``confusables.txt``, NFD again. The data is Unicode's own file, kept verbatim
beside this module (``unicode/confusables.txt``, version 18.0.0; to update it, replace the file
with a newer ``Public/security/<version>/confusables.txt``). Default_Ignorable_Code_Point, which
``unicodedata`` lacks, comes from the ``regex`` module's Unicode tables.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import regex

DATA = Path(__file__).resolve().parent / "unicode" / "confusables.txt"

_DEFAULT_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")


def is_default_ignorable(char: str) -> bool:
    """Whether ``char`` is a Default_Ignorable_Code_Point: shown as nothing when unsupported
    (joiners, variation selectors, fillers such as U+3164, tags...)."""
    return _DEFAULT_IGNORABLE.fullmatch(char) is not None


def has_default_ignorable(text: str) -> bool:
    """Whether any character of ``text`` is default-ignorable."""
    return _DEFAULT_IGNORABLE.search(text) is not None


def skeleton(text: str) -> str:
    """UTS #39's ``skeleton(text)``: equal skeletons mean the strings may be mistaken for
    each other. Case matters (``I`` and ``l`` share one; ``i`` does not)."""
    decomposed = _DEFAULT_IGNORABLE.sub("", unicodedata.normalize("NFD", text))
    mapped = "".join(_PROTOTYPES.get(char, char) for char in decomposed)
    return unicodedata.normalize("NFD", mapped)


def _load_prototypes() -> dict[str, str]:
    """``confusables.txt`` as a dict: source character to its prototype string."""
    table: dict[str, str] = {}
    with DATA.open(encoding="utf-8-sig") as lines:
        for line in lines:
            fields = line.split("#", 1)[0].split(";")
            if len(fields) < 3:
                continue
            source = "".join(chr(int(point, 16)) for point in fields[0].split())
            table[source] = "".join(chr(int(point, 16)) for point in fields[1].split())
    return table


_PROTOTYPES = _load_prototypes()
"""Loaded once at import (about 70 ms), not in the middle of the first join."""
