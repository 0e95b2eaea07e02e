"""Hostile values and structure-aware mutations of valid JSON documents (hypothesis strategies).

`mutated(value)` draws one to three edits at random places of a deep copy of `value`: replace a
member by a hostile value (another type, an extreme integer, a long string, a Unicode trick,
deep nesting), delete it, add an unknown member, duplicate a list item, or change a string by
one character. The caller re-signs the result with the right key, so that a reader gets past the
signature and its deeper checks are exercised.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

EXTREME_INTS = [
    0,
    -1,
    1,
    2,
    16,
    17,
    255,
    366 * 86400 + 1,
    2**31,
    2**40,
    2**50,
    2**50 + 1,
    2**53 + 1,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**100,
]
UNICODE_TRICKS = [
    "",
    " ",
    "\u202e",  # right-to-left override
    "\u200b",  # zero width space
    "\ufeff",
    "e\u0301",  # NFD
    "\u00e9",
    "ＡＢＣ",  # fullwidth
    "İ",
    "ß",
    "\ud800",  # lone surrogate: cannot be encoded, so cannot be signed
    "..",
    ".",
    "../../etc/passwd",
    "/etc/passwd",
    "a\x00b",
    "a\\b",
    "a/b",
    "a//b",
    "\n",
    "age1",
    "velador:card:v1:",
    "http://",
    "javascript:alert(1)",
]


def deep(depth: int, leaf: Any = 0) -> Any:
    out = leaf
    for _ in range(depth):
        out = [out]
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
hostile_values = st.one_of(
    json_values,
    st.sampled_from(EXTREME_INTS),
    st.sampled_from(UNICODE_TRICKS),
    st.sampled_from(["a" * 5000, "é" * 3000, "x" * 70_000]),
    st.integers(1, 500).map(deep),
    st.just({}),
    st.just([]),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if len(prefix) > 12:  # do not walk into deep nesting this module made itself
        return out
    if isinstance(obj, dict):
        for k in sorted(obj):
            out.extend(_paths(obj[k], (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def mutated(draw: st.DrawFn, value: Any, max_edits: int = 3) -> Any:
    doc = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, max_edits))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = _get(doc, path[:-1])
        key = path[-1]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "dup", "tweak"]))
        if op == "replace":
            parent[key] = draw(hostile_values)
        elif op == "delete":
            del parent[key]
        elif op == "add":
            if isinstance(parent, dict):
                parent[draw(st.sampled_from(["x", "extra", "v2", "url", "node", "size"]))] = draw(
                    hostile_values
                )
            else:
                parent.append(draw(hostile_values))
        elif op == "dup":
            if isinstance(parent, list):
                parent.append(copy.deepcopy(parent[key]))
            else:
                parent[key] = [parent[key], copy.deepcopy(parent[key])]
        else:
            old = parent[key]
            if isinstance(old, str):
                i = draw(st.integers(0, len(old)))
                parent[key] = (
                    old[:i]
                    + draw(st.sampled_from([*UNICODE_TRICKS[1:], "A", "0"]))
                    + (old[i + 1 :])
                )
            elif isinstance(old, bool):
                parent[key] = not old
            elif isinstance(old, int):
                parent[key] = draw(st.sampled_from([old + 1, old - 1, -old, *EXTREME_INTS]))
            else:
                parent[key] = draw(hostile_values)
    return doc


@st.composite
def flipped(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes flipped, cut, or extended."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip", "cut", "insert"]))
        if op == "flip" and buf:
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= draw(st.integers(1, 255))
        elif op == "cut" and buf:
            i = draw(st.integers(0, len(buf)))
            buf = buf[:i]
        else:
            i = draw(st.integers(0, len(buf)))
            buf[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)
