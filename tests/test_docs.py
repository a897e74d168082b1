"""The docs stay true to the code: docs/TROUBLESHOOTING.md lists every user-facing error message with what to do,
and README.md, the page a person reads first, stays short and points to it."""
from __future__ import annotations

import ast
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


def test_readme_is_a_page_a_person_reads():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 350, f"README.md has {len(lines)} lines: move reference material to docs/GUIDE.md"


_PATH = re.compile(r"(?<![\w/<.‹-])((?:configs|tools|maskseg_d2|scripts|docs|benchmarks|notebooks|tests)/[\w./{},-]*)")
_MODULE = re.compile(r"(?<![\w/.])(maskseg_d2(?:\.\w+)+)")


def _expand(path: str) -> list[str]:
    """``a/{b,c}.py`` -> ``a/b.py``, ``a/c.py``."""
    m = re.search(r"\{([^{}]*)\}", path)
    return [p for alt in m.group(1).split(",") for p in _expand(path[:m.start()] + alt + path[m.end():])] if m \
        else [path]


def _missing_names(text: str) -> list[str]:
    """Repository paths and ``maskseg_d2.x.y`` names in a document that do not exist (any more)."""
    missing = []
    for raw in _PATH.findall(text):
        for path in _expand(raw.rstrip(".,")):
            if not (ROOT / path.rstrip("/")).exists():
                missing.append(path)
    for dotted in _MODULE.findall(text):
        parts, i = dotted.split("."), len(dotted.split("."))
        while i > 1 and not ((ROOT / "/".join(parts[:i])).with_suffix(".py").is_file()
                             or (ROOT / "/".join(parts[:i]) / "__init__.py").is_file()):
            i -= 1
        module = ROOT / "/".join(parts[:i])
        source = module.with_suffix(".py") if module.with_suffix(".py").is_file() else module / "__init__.py"
        rest = parts[i:]  # an attribute of the module: defined or imported at its top level
        if i == 1 or rest and rest[0] not in _top_level_names(source):
            missing.append(dotted)
    return missing


def _top_level_names(source: Path) -> set[str]:
    names = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_docs_name_files_and_modules_that_exist():
    """Renames reach the docs: every path (``tools/x.py``, ``configs/...``) and ``maskseg_d2.x`` name is there."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "datasets" / "README.md"]
    missing = {d.relative_to(ROOT).as_posix(): m for d in docs if (m := _missing_names(d.read_text(encoding="utf-8")))}
    assert not missing, f"the docs name files or modules that do not exist: {missing}"


def test_readme_layout_matches_the_package():
    """The Layout section names each folder it shows, and every subpackage of maskseg_d2/."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):].split("```")[1]
    top = re.findall(r"^(\S+/)\s", layout, re.MULTILINE)
    inside = re.findall(r"^  (\S+)\s", layout, re.MULTILINE)  # entries under maskseg_d2/
    missing = [p for p in top if not (ROOT / p).is_dir()] + [f"maskseg_d2/{p}" for p in inside
                                                              if not (ROOT / "maskseg_d2" / p).exists()]
    assert not missing, f"README Layout names what is not there: {missing}"
    packages = sorted(p.parent.name + "/" for p in (ROOT / "maskseg_d2").glob("*/__init__.py"))
    unlisted = [p for p in packages if p not in inside]
    assert not unlisted, f"README Layout leaves out maskseg_d2/{unlisted}"
