"""The docs stay true to the code: docs/TROUBLESHOOTING.md lists every user-facing error message with what to do,
and README.md, the page a person reads first, stays short and points to it."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _catalog_module():
    spec = importlib.util.spec_from_file_location("error_catalog", ROOT / "scripts" / "error_catalog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_troubleshooting_lists_every_error_message():
    ec = _catalog_module()
    text = ec.CATALOG.read_text(encoding="utf-8")
    block = text[text.index(ec.BEGIN): text.index(ec.END) + len(ec.END)]
    expected = ec.markdown(ec.catalog())
    missing = [e.message for e in ec.catalog() if f"`{e.message.replace('|', chr(92) + '|')}`" not in block]
    assert block == expected, (f"docs/TROUBLESHOOTING.md is out of date ({len(missing)} message(s) missing, e.g. "
                               f"{missing[:3]}) — run: python scripts/error_catalog.py --write")


def test_readme_links_the_full_list():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/TROUBLESHOOTING.md)" in readme
    assert "error-catalog:begin" not in readme  # the generated tables live in docs/TROUBLESHOOTING.md only


def test_catalog_finds_the_known_messages():
    ec = _catalog_module()
    messages = [e.message for e in ec.catalog()]
    assert len(messages) > 150  # the importers alone have > 100
    for needle in ("training diverged: the loss became NaN/Inf at iteration ‹iter›",  # built by a helper method
                   "‹where›: image ‹path› is too large to open: ‹error›",  # where=where or str(path)
                   "‹where›: polygon has ‹p› point(s), needs at least 3"):  # via _geometry_error()
        assert any(m.startswith(needle) for m in messages), needle


_GUIDANCE = re.compile(r"\b(use|give|pass|set|choose|put|must|add|check|remove|try|fix|rename|wait|train|"
                       r"export|install|drop|lower|redraw|keep|annotate|resize|copy|needs|expected|e\.g)\b",
                       re.IGNORECASE)


def test_every_error_says_what_to_do():
    """A message without a fix (``... — <fix>``) must at least name the valid choice in its own words."""
    ec = _catalog_module()
    bare = [f"{e.where}: {e.message}" for e in ec.catalog() if not e.fix and not _GUIDANCE.search(e.message)]
    assert not bare, f"error messages that do not say what to do: {bare}"
