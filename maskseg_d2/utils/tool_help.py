"""``--help`` of the Hydra tools: every option with its meaning, read from the comments of the tool's config.

Hydra's default help prints ``$APP_CONFIG_GROUPS``, which is every config group of the *search path*, not of the
config being composed: all tools share ``configs/`` (and the ConfigStore entries of
:mod:`maskseg_d2.config_store`), so ``tools/eval.py --help`` listed the training groups (``augment``,
``experiment``, ``model``, ``d2_keys``...). The templates in ``configs/hydra/help/<tool>.yaml`` use
``${maskseg_options:<config>}`` instead: the groups of that config's own defaults list, then each key with its
default and the comment written beside it in the YAML file, so an option's meaning is written in one place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf

from .paths import project_root

__all__ = ["Option", "read_options", "format_options", "register_help_resolver"]

_KEY = re.compile(r"^( *)([A-Za-z_][\w.-]*):(.*)$")
_DEFAULT = re.compile(r"^ *- *(optional +|override +)?([\w/@.]+) *: *([\w.-]+) *$")
_WIDTH = 34  # key=value column


@dataclass
class Option:
    """One line of a config: ``key`` (dotted; a group name in the defaults list), its ``value`` text, its comment."""

    key: str
    value: str
    comment: str = ""


def _split(text: str) -> tuple[str, str]:
    """``'value   # comment'`` -> ``('value', 'comment')``."""
    value, _, comment = text.partition(" #") if not text.lstrip().startswith("#") else ("", "", text.lstrip()[1:])
    return value.strip(), comment.strip()


def read_options(path: Path) -> tuple[str, list[Option], list[Option]]:
    """Parse a config file's comments (line-based: the YAML loader drops them).

    Returns:
        tuple: the header (first sentence of the leading comment), the defaults-list entries (``key`` = group,
        ``value`` = option), the keys (dotted, depth-first; without the ``hydra`` node and the children of raw
        ``d2`` nodes).
    """
    header, defaults, keys, stack, pending = [], [], [], [], []
    block = None  # "defaults" | "hydra" | None while inside that top-level block
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            text = _split(line)[1]
            if not keys and not defaults and not stack and block is None:
                header += [] if text.startswith("@package") else [text]
            elif line.startswith(" ") and keys and block is None:
                keys[-1].comment = f"{keys[-1].comment} {text}".strip()  # a comment continued on the next line
            elif not line.startswith(" "):
                pending.append(text)  # comment lines above a key
            continue
        if block == "defaults" and line.startswith(" "):
            m = _DEFAULT.match(_split(line)[0])
            if m and m.group(1) != "override ":
                defaults.append(Option(m.group(2), m.group(3), _split(line)[1]))
            continue
        m = _KEY.match(line)
        if m is None:
            continue  # list items, flow continuation
        indent, key, (value, comment) = len(m.group(1)), m.group(2), _split(m.group(3))
        if indent == 0:
            block = key if key in ("defaults", "hydra") else None
        if block is not None:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(k == "d2" for _, k in stack):
            continue
        if key == "d2" and not value:  # a raw Detectron2 node: its keys are Detectron2's, not listed one by one
            value, comment = "{...}", comment or "Detectron2 keys set by this file (--cfg job shows them)"
        keys.append(Option(".".join([k for _, k in stack] + [key]), value, comment or " ".join(pending)))
        pending = []
        if not value or value == "{...}":
            stack.append((indent, key))
    first = re.split(r"(?<=\.) ", " ".join(header), maxsplit=1)[0]  # its first sentence
    return first, defaults, keys


def _rows(options: list[Option], prefix: str = "") -> list[str]:
    rows = []
    for o in options:
        key = f"{prefix}{o.key}"
        left = f"  {key}={o.value}" if o.value else f"  {key}:"
        rows.append((f"{left:<{_WIDTH}} " if len(left) < _WIDTH else f"{left}   ") + o.comment)
        rows[-1] = rows[-1].rstrip()
    return rows


def format_options(config_name: str, choices: Mapping[str, Any] | None = None, config_dir: str | None = None) -> str:
    """The groups and options of ``configs/<config_name>.yaml`` (and of the group files chosen), as help text.

    Args:
        config_name (str): ``train``, ``eval``, ``predict``, ``export`` or ``visualize``.
        choices (Mapping or None): Hydra's ``hydra.runtime.choices`` (group -> option chosen); None: the defaults.
        config_dir (str or None): the ``configs/`` folder; None: the repository's.
    """
    root = Path(config_dir or Path(project_root()) / "configs")
    _, defaults, keys = read_options(root / f"{config_name}.yaml")
    groups, sections = [], []
    for d in defaults:
        folder = root / d.key
        if not folder.is_dir() or d.key == "hydra":
            continue  # _self_, Hydra's own groups, ConfigStore nodes (d2_keys), a missing configs/local
        chosen = choices[d.key] if choices and d.key in choices else d.value
        chosen = None if chosen in (None, "null") else str(chosen)
        names = " | ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        file = folder / f"{chosen}.yaml" if chosen else None
        header, _, group_keys = read_options(file) if file and file.is_file() else ("", [], [])
        groups.append(Option(d.key, chosen or "null", f"{d.comment or header} [{names}]".lstrip()))
        if group_keys:
            is_global = "@package _global_" in file.read_text(encoding="utf-8")
            sections += ["", f"{d.key}={chosen} (configs/{d.key}/{chosen}.yaml): {header}".rstrip()]
            sections += _rows(group_keys, "" if is_global else f"{d.key}.")
    text = ["== Options (key=value on the command line; the default shown) =="]
    if groups:
        text += ["", "Config groups (group=option; the files in configs/<group>/):"] + _rows(groups)
    text += ["", f"configs/{config_name}.yaml:"] + _rows(keys) + sections
    return "\n".join(text).replace("$", "$$")  # Hydra fills the template with string.Template: $ is special


def _resolve(config_name: str, *, _root_: Any) -> str:
    choices = OmegaConf.select(_root_, "hydra.runtime.choices")
    return format_options(config_name, None if choices is None else OmegaConf.to_container(choices))


def register_help_resolver() -> None:
    """``${maskseg_options:<config>}`` for the help templates. Idempotent."""
    if not OmegaConf.has_resolver("maskseg_options"):
        OmegaConf.register_new_resolver("maskseg_options", _resolve)
