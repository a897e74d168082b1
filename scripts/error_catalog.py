"""Every one-line error a user can get, read from the source, as the tables of docs/TROUBLESHOOTING.md.

Each user-facing error is built by ``UserError(...)``, ``fail(where, what, fix)`` or a thin wrapper of
``fail`` (``<where>: <what> — <fix>``). This script finds those calls with :mod:`ast`, renders each
message template (``{path}`` -> ``<path>``) and writes the tables between the markers of
docs/TROUBLESHOOTING.md, so the list cannot fall behind the code: ``tests/test_docs.py`` fails when it does.
(README.md keeps a short hand-picked table of the commonest problems and links to the full list.)

Usage::

    python scripts/error_catalog.py            # print the tables
    python scripts/error_catalog.py --write    # update docs/TROUBLESHOOTING.md in place
    python scripts/error_catalog.py --check    # exit 1 when docs/TROUBLESHOOTING.md is out of date
"""
from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "docs" / "TROUBLESHOOTING.md"
BEGIN, END = "<!-- error-catalog:begin -->", "<!-- error-catalog:end -->"
SOURCES = ("maskseg_d2", "tools")
# (where, what, fix) builders: fail() and the wrappers that forward their arguments to it.
FAIL_LIKE = {"fail", "_geometry_error"}
# Helpers whose messages say what the caller passes (read_json(path, what, setting, fix)): listed at each call,
# with the caller's string arguments (the defaults where it gives none), in the caller's table. Each is found by
# name (its one module-level def in SOURCES), so the list follows it when the module moves.
MESSAGE_HELPERS = ("read_json",)
AREAS = {  # first path part below maskseg_d2/ -> table
    "data": "Data import (training, tools/convert.py, tools/visualize.py mode=gt)",
    "engine": "Training and run dirs (tools/train.py, tools/eval.py run=...)",
    "evaluation": "Evaluation files (tools/eval.py gt=... pred=..., compare=...)",
    "predict": "Prediction (tools/predict.py)",
    "visualization": "Drawing (tools/visualize.py)",
}
OTHER = "Configuration, export, notebooks, setup"
SEP = " — "


@dataclass(frozen=True)
class Entry:
    area: str
    message: str
    fix: str
    where: str  # file:line of the first occurrence


def _placeholder(node: ast.expr) -> str:
    text = ast.unparse(node)
    names = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)
    name = names[-1] if names and len(text) <= 40 else "…"
    if name in {"e", "err", "exc"}:
        name = "error"
    return f"‹{name}›"  # not <name>: raw markdown would need HTML escapes


def render(node: ast.expr | None, defaults: dict[str, str] | None = None) -> str | None:
    """A message template from a str expression; ``None`` when it is built elsewhere (not a literal).
    ``defaults``: known string values of names (a message helper's arguments), shown instead of ‹name›."""
    defaults = defaults or {}
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in defaults:
        return defaults[node.id]
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else defaults.get(getattr(v.value, "id", ""))
                       or _placeholder(v.value) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = render(node.left, defaults), render(node.right, defaults)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.IfExp):  # "a" if x else "b": the longer one carries the meaning
        a, b = render(node.body, defaults), render(node.orelse, defaults)
        return max((t for t in (a, b) if t is not None), key=len, default=None)
    if isinstance(node, ast.BoolOp):  # where or str(path)
        return _placeholder(node.values[0])
    if isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
        return _placeholder(node)
    return None


def _args(call: ast.Call, names: tuple[str, ...]) -> list[ast.expr | None]:
    got: list[ast.expr | None] = list(call.args) + [None] * (len(names) - len(call.args))
    for kw in call.keywords:
        if kw.arg in names:
            got[names.index(kw.arg)] = kw.value
    return got[: len(names)]


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _clean(text: str) -> str:
    return " ".join(text.split())


def _message(node: ast.Call, defaults: dict[str, str], builders: dict[str, ast.FunctionDef]) -> tuple[str, str] | None:
    """(message, fix) of one ``fail(...)``/``UserError(...)`` call; None for other calls and forwarders."""
    name = _callee(node)
    if name in FAIL_LIKE:
        where, what, fix = (render(a, defaults) for a in _args(node, ("where", "what", "fix")))
        if where is None or what is None or fix is None:
            return None
        message = f"{where}: {what}"
    elif name == "UserError" and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Call) and _callee(arg) in builders:  # UserError(self._message(...))
            returns = [r.value for r in ast.walk(builders[_callee(arg)]) if isinstance(r, ast.Return)]
            arg = returns[0] if len(returns) == 1 else arg
        text = render(arg, defaults)
        if text is None or text == _placeholder(arg):  # only a variable: the message is built elsewhere
            return None
        message, _, fix = text.partition(SEP)
    else:
        return None
    if not re.sub(r"‹[^›]*›|[^A-Za-z]", "", message):  # a forwarder such as fail(where, what, fix)
        return None
    return _clean(message), _clean(fix)


def _sources() -> list[Path]:
    return [path for top in SOURCES for path in sorted((ROOT / top).rglob("*.py"))]


@functools.cache  # parsed once: the helpers are looked up in the same trees
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@functools.cache
def _helpers() -> dict[str, ast.FunctionDef]:
    """name -> the module-level def of each message helper."""
    found: dict[str, list[tuple[Path, ast.FunctionDef]]] = {name: [] for name in MESSAGE_HELPERS}
    for path in _sources():
        for f in _tree(path).body:
            if isinstance(f, ast.FunctionDef) and f.name in found:
                found[f.name].append((path, f))
    for name, defs in found.items():
        if len(defs) != 1:
            where = ", ".join(str(p.relative_to(ROOT)) for p, _ in defs) or "nowhere"
            raise LookupError(f"message helper {name}() is defined {len(defs)} times ({where}); expected once")
    return {name: defs[0][1] for name, defs in found.items()}


def _bound_strings(call: ast.Call, helper: ast.FunctionDef) -> dict[str, str]:
    """The helper's parameters that this call gives as string literals, or leaves at a string default."""
    params = [a.arg for a in helper.args.posonlyargs + helper.args.args]
    given = dict(zip(params, call.args)) | {kw.arg: kw.value for kw in call.keywords if kw.arg}
    defaults = dict(zip(params[len(params) - len(helper.args.defaults):], helper.args.defaults))
    values = {p: given.get(p, defaults.get(p)) for p in params}
    return {p: v.value for p, v in values.items() if isinstance(v, ast.Constant) and isinstance(v.value, str)}


def entries_in(path: Path) -> list[Entry]:
    """The error messages built in one source file (a message helper's at each call of it)."""
    rel = path.relative_to(ROOT)
    parts = rel.parts
    area = AREAS.get(parts[1], OTHER) if parts[0] == "maskseg_d2" and len(parts) > 2 else OTHER
    tree = _tree(path)
    builders = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    helpers = _helpers()
    in_helper = {id(n) for f in helpers.values() for n in ast.walk(f)}  # listed at the calls instead
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in in_helper:
            continue
        if _callee(node) in helpers:
            helper = helpers[_callee(node)]
            strings = _bound_strings(node, helper)
            found = [_message(n, strings, {}) for n in ast.walk(helper) if isinstance(n, ast.Call)]
        else:
            found = [_message(node, {}, builders)]
        out += [Entry(area, m, fix, f"{rel}:{node.lineno}") for m, fix in filter(None, found)]
    return out


def catalog() -> list[Entry]:
    """All error messages, in source order, duplicates (same message and fix) dropped."""
    seen, out = set(), []
    for path in _sources():
        for e in entries_in(path):
            if (e.message, e.fix) not in seen:
                seen.add((e.message, e.fix))
                out.append(e)
    return out


def _code(text: str) -> str:
    """A table cell in backticks: the message as printed, with its own ``<run dir>`` kept literal."""
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _prose(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown(entries: list[Entry]) -> str:
    """The generated block: one collapsible table per area."""
    lines = [BEGIN, "<!-- generated by scripts/error_catalog.py --write; edit the messages in the code -->"]
    for area in [*AREAS.values(), OTHER]:
        rows = [e for e in entries if e.area == area]
        if not rows:
            continue
        lines += ["", f"<details><summary>{area}: {len(rows)} messages</summary>", "",
                  "| message (‹…›: filled in) | what to do |", "|---|---|"]
        lines += [f"| {_code(e.message)} | {_prose(e.fix) or '(said in the message)'} |" for e in rows]
        lines += ["", "</details>"]
    return "\n".join([*lines, END])


def update(text: str, block: str) -> str:
    """The document's text with the block between the markers replaced."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="update docs/TROUBLESHOOTING.md in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when docs/TROUBLESHOOTING.md is out of date")
    args = ap.parse_args(argv)
    block = markdown(catalog())
    if not (args.write or args.check):
        print(block)
        return 0
    text = CATALOG.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"error: {CATALOG}: the markers {BEGIN} / {END} are missing — add them under ## Every message",
              file=sys.stderr)
        return 2
    new = update(text, block)
    if args.check:
        if new != text:
            print(f"{CATALOG}: the error tables are out of date — run: python scripts/error_catalog.py --write",
                  file=sys.stderr)
            return 1
        return 0
    CATALOG.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
