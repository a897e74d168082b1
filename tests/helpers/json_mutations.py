"""Shared pieces of the property tests that mutate valid JSON documents (importers, tools/eval.py inputs):
paths into a document, fair drawing of a field, and applying one mutation to a copy."""
from __future__ import annotations

import copy
import json
from typing import Any, Callable, Mapping

from hypothesis import strategies as st

Path_ = tuple  # a path into a JSON document: dict keys and list indices


def json_paths(node: Any, prefix: Path_ = ()) -> list[tuple[Path_, Any]]:
    """Every (path, value) below ``node``, depth first."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append((prefix + (key,), value))
        out += json_paths(value, prefix + (key,))
    return out


def parent_of(doc: Any, path: Path_) -> Any:
    """The container that holds ``path[-1]``."""
    for key in path[:-1]:
        doc = doc[key]
    return doc


def field_of(path: Path_) -> Path_:
    """The path with list indices replaced by ``*``: one field, however long its lists are."""
    return tuple("*" if isinstance(k, int) else k for k in path)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@st.composite
def path_in(draw, candidates: list[Path_]) -> Path_:
    """A field drawn uniformly (an RLE of 200 numbers is one field, not 200), then one of its paths."""
    field = draw(st.sampled_from(sorted({field_of(p) for p in candidates}, key=str)))
    return draw(st.sampled_from([p for p in candidates if field_of(p) == field]))


def mutate(doc: Any, kind: str, path: Path_, arg: Any, invalid_numbers: Mapping[str, Callable[[Any], Any]],
           cut_file: str = "cut file") -> Any:
    """A mutated copy of ``doc``; the ``cut_file`` kind returns the cut JSON text instead.

    Kinds: ``delete``/``delete key``, ``change type``/``set``/``rename label`` (value = ``arg``), ``invalid
    number`` (``invalid_numbers[arg](old value)``), ``cut RLE``/``truncate RLE`` (keep the fraction ``arg``),
    ``extend RLE`` (one more run).
    """
    if kind == cut_file:
        text = json.dumps(doc)
        return text[: int(len(text) * arg)]
    doc = copy.deepcopy(doc)
    parent, key = parent_of(doc, path), path[-1]
    if kind in ("delete", "delete key"):
        del parent[key]
    elif kind in ("change type", "set", "rename label"):
        parent[key] = arg
    elif kind == "invalid number":
        parent[key] = invalid_numbers[arg](parent[key])
    elif kind in ("cut RLE", "truncate RLE"):
        parent[key] = parent[key][: int(len(parent[key]) * arg)]
    elif kind == "extend RLE":
        parent[key] = parent[key] + ("o" * 6 + "1" if isinstance(parent[key], str) else [5])
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return doc
