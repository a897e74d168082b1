"""Load bookkeeping and class mapping shared by every importer.

An importer builds dataset dicts whose annotations carry a pending class *name* (:data:`PENDING_NAME`);
:class:`ClassMapper` turns names into contiguous ``category_id`` once every label has been seen (with
``classes=None`` the classes are discovered from the data). :class:`LoadStats` counts skipped and
adjusted items (one warning per load) or, when lenient, collects the problems for the validation
report (a parser carries both in a :class:`LoadContext`); :func:`finish_load` assigns the ids and packs
everything into a :class:`LoadResult`.
"""
from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ..errors import UserError, fail
from ..utils.overrides import dict_override, list_override, shell, yaml_flow

__all__ = [
    "ON_ERROR_POLICIES",
    "OPTION_SYNTAXES",
    "PENDING_NAME",
    "PROGRESS_MIN_ITEMS",
    "UNKNOWN_POLICIES",
    "ClassMapper",
    "LoadContext",
    "LoadResult",
    "LoadStats",
    "finish_load",
    "progress",
]

logger = logging.getLogger(__name__)

PENDING_NAME = "category_name"  # key holding the class name until ClassMapper.assign() sets category_id
UNKNOWN_POLICIES = ("error", "skip")
ON_ERROR_POLICIES = ("error", "skip")  # an invalid item: stop with its one-line error | skip it, counted
OPTION_SYNTAXES = ("override", "argparse")  # how the unknown-label error spells its fixes: train/visualize | convert
PROGRESS_MIN_ITEMS = 200  # smaller loads finish before a progress bar would be worth reading
# difflib ratio above which an unknown label is said to look like a class: Car/car 1.0, cars/car 0.86, but not
# tree/truck (0.67, which difflib's default 0.6 would suggest), since users may type the mapping as printed
NEAR_MATCH = 0.75


class LoadStats:
    """Counts skipped items by reason; :meth:`report` logs them in ONE warning per load.

    Besides skips it counts *adjustments* (an EXIF-rotated image whose annotation size was recorded
    before rotation, an image resized since it was annotated ...) and, when ``strict`` is False,
    collects *problems* (what would have been a :class:`UserError`) instead of raising, so a
    validation report can list all of them at once.

    Args:
        source (str): the file or folder being loaded (named in the warning).
        strict (bool): raise on the first problem (training) or collect them all (report).
    """

    def __init__(self, source: str, strict: bool = True) -> None:
        self.source = source
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.notes: Counter[str] = Counter()
        self.note_examples: dict[str, str] = {}
        self.problems: list[tuple[str, str]] = []

    def skip(self, reason: str, where: str) -> None:
        """Count one skipped item.

        Args:
            reason (str): why, e.g. ``"keypointlabels result"``; items are grouped by it.
            where (str): the item, e.g. ``"task 7 result ab12"`` (the first one is shown as example).
        """
        self.counts[reason] += 1
        self.examples.setdefault(reason, where)

    def note(self, reason: str, where: str) -> None:
        """Count one item that was kept after an adjustment (e.g. ``"rescaled to the image size"``)."""
        self.notes[reason] += 1
        self.note_examples.setdefault(reason, where)

    def problem(self, error: UserError, kind: str = "invalid item") -> None:
        """Raise ``error`` (strict), or record it and count the item as skipped (lenient).

        Args:
            error (UserError): the one-line error.
            kind (str): problem class when the error has no ``kind`` of its own.
        """
        if self.strict:
            raise error
        kind = getattr(error, "kind", kind)
        self.problems.append((kind, str(error)))
        self.skip(f"invalid: {kind}", str(error).split(" — ", 1)[0])  # file, item and what, not the fix

    @property
    def total(self) -> int:
        """int: number of skipped items."""
        return sum(self.counts.values())

    def message(self) -> str:
        """str: the one-line summary ("" when nothing was skipped or adjusted)."""
        parts = []
        if self.counts:
            listed = "; ".join(f"{n}× {r} (e.g. {self.examples[r]})" for r, n in sorted(self.counts.items()))
            parts.append(f"skipped {self.total} item(s): {listed}")
        if self.notes:
            listed = "; ".join(f"{n}× {r} (e.g. {self.note_examples[r]})"
                               for r, n in sorted(self.notes.items()))
            parts.append(f"adjusted {sum(self.notes.values())} item(s): {listed}")
        return f"{self.source}: " + " | ".join(parts) if parts else ""

    def report(self, log: logging.Logger | None = None) -> str:
        """Log the summary as one warning (nothing when nothing was skipped or adjusted).

        Returns:
            str: the message logged, or "".
        """
        msg = self.message()
        if msg:
            (log or logger).warning(msg)
        return msg


@dataclass
class LoadResult:
    """What an importer's ``read_*`` function returns (``load_*`` returns only ``dicts``).

    Attributes:
        dicts (list[dict]): Detectron2 standard dataset dicts.
        thing_classes (list[str]): class names; index = ``category_id``.
        skipped (dict[str, int]): skipped items by reason.
        adjusted (dict[str, int]): items kept after an adjustment (EXIF, rescale ...), by reason.
        problems (list[tuple[str, str]]): (kind, one-line message) of invalid items; only filled
            by a non-strict load (``strict=False``), a strict one raises on the first.
        format (str): the format read (``"labelstudio"``, ``"coco"`` ...).
    """

    dicts: list[dict]
    thing_classes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    adjusted: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    format: str = ""


def finish_load(dicts: list[dict], mapper: "ClassMapper", stats: LoadStats, fmt: str,
                log: logging.Logger | None = None) -> LoadResult:
    """Assign class ids, log the one skip/adjust warning and the summary; build the :class:`LoadResult`.

    Args:
        dicts (list[dict]): dataset dicts with pending class names.
        mapper (ClassMapper): the mapper that saw every label.
        stats (LoadStats): the load's counters.
        fmt (str): the format name, stored in the result.
        log (logging.Logger or None): the importer's logger.

    Returns:
        LoadResult: dicts with ``category_id`` set, classes and counts.
    """
    thing_classes = mapper.assign(dicts, stats.source, stats)
    stats.report(log)
    (log or logger).info("Loaded %d image(s) with %d instance(s) from %s", len(dicts),
                         sum(len(d["annotations"]) for d in dicts), stats.source)
    return LoadResult(dicts, thing_classes, dict(stats.counts), dict(stats.notes), list(stats.problems), fmt)


@dataclass
class LoadContext:
    """What a parser passes down one load: the source named in messages, the class mapper, the counters.

    Each format's parser extends it with its own state (image index, pick policy ...).
    """

    source: str
    mapper: "ClassMapper"
    stats: LoadStats


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    """Wrap a long loop in a tqdm progress bar (on stderr); short loops are returned unchanged.

    Args:
        items (iterable): what the loop runs over.
        desc (str): the bar's label.
        total (int or None): number of items when ``items`` has no ``len``.

    Returns:
        iterable: ``items`` or a tqdm wrapper of it.
    """
    n = total if total is not None else (len(items) if hasattr(items, "__len__") else 0)
    if n < PROGRESS_MIN_ITEMS:
        return items
    return tqdm(items, desc=desc, total=n, unit="item", leave=False, mininterval=0.5)


# -------------------------------------------------------------------------------------------- classes


def _clean(label: Any) -> str:
    return str(label).strip()


class ClassMapper:
    """Resolves label strings to contiguous class ids ``0..K-1``.

    Labels are stripped, then mapped through ``class_map`` (a label mapped to ``None`` or ``""`` is
    dropped and counted as skipped). With ``classes=None`` the classes are discovered: the sorted set of
    mapped labels seen. With a ``classes`` list, a label outside it is an error listing every unknown
    label with its count and first occurrence -- or, with ``unknown="skip"``, its instances are
    dropped and counted per label.

    Args:
        classes (list[str] or None): the class names in id order, or None to discover them.
        class_map (dict[str, str] or None): raw label -> class name (e.g. ``{"Car": "car"}``).
        unknown (str): ``"error"`` (default) or ``"skip"``, for labels outside ``classes``.
        syntax (str): how the unknown-label error spells the fixes to type: ``"override"`` (Hydra
            overrides: tools/train.py, tools/visualize.py) or ``"argparse"`` (tools/convert.py options).
    """

    def __init__(self, classes: Sequence[str] | None = None, class_map: Mapping[str, Any] | None = None,
                 unknown: str = "error", syntax: str = "override"):
        if unknown not in UNKNOWN_POLICIES:
            raise fail(f"dataset.unknown={unknown}", "unknown policy",
                       f"use one of {', '.join(UNKNOWN_POLICIES)}")
        if syntax not in OPTION_SYNTAXES:
            raise ValueError(f"syntax={syntax!r}: use one of {OPTION_SYNTAXES}")  # a caller's bug, not the user's
        self.unknown, self.syntax = unknown, syntax
        self.class_map = {_clean(k): (None if v is None else _clean(v)) for k, v in (class_map or {}).items()}
        self.classes = None if classes is None else [_clean(c) for c in classes]
        if self.classes is not None:
            dup = sorted(c for c, n in Counter(self.classes).items() if n > 1)
            if dup or not all(self.classes):
                what = f"duplicate class name(s) {dup}" if dup else "empty class name"
                raise fail("dataset.classes", what, "list each class once")
        self.seen: Counter[str] = Counter()
        self.first_seen: dict[str, str] = {}

    def map(self, label: Any) -> str | None:
        """Strip and map one raw label.

        Args:
            label: the raw label from the annotation file.

        Returns:
            str or None: the class name, or None when ``class_map`` drops the label.
        """
        name = _clean(label)
        if name in self.class_map:
            name = self.class_map[name]
        return name or None

    def observe(self, name: str, where: str) -> None:
        """Record that an annotation with class ``name`` (already mapped) was seen at ``where``."""
        self.seen[name] += 1
        self.first_seen.setdefault(name, where)

    def unknown_labels(self) -> list[str]:
        """list[str]: labels seen that are not in ``classes`` (sorted; empty when discovering)."""
        return [] if self.classes is None else [n for n in sorted(self.seen) if n not in self.classes]

    def _unknown_error(self, source: str, unknown: list[str]) -> UserError:
        listed = ", ".join(f"'{n}' ({self.seen[n]}×, first at {self.first_seen[n]})" for n in unknown)
        unknown_skip = "pass --unknown skip" if self.syntax == "argparse" else "set dataset.unknown=skip"
        class_map_or_classes = self._suggest_fix(unknown)
        return fail(source, f"unknown label(s) {listed}; known classes: {', '.join(self.classes or [])}",
                    f"{class_map_or_classes}; or {unknown_skip} (drops their instances)")

    def _suggest_fix(self, unknown: list[str]) -> str:
        """What to type so that ``unknown`` labels load, as exact shell text.

        A class_map for the labels that look like a class (same name up to case, or a near spelling:
        ``Car`` -> ``car``); for the rest, the classes list grown by them, or a class_map dropping them. A
        label that no override can spell (Hydra takes ASCII keys only) gets the dataset YAML line instead.
        """
        classes = list(self.classes or [])
        by_lower = {c.lower(): c for c in classes}
        near = {n: by_lower[m[0]] for n in unknown
                if (m := difflib.get_close_matches(n.lower(), list(by_lower), n=1, cutoff=NEAR_MATCH))}
        others = [n for n in unknown if n not in near]
        parts = []
        if near:
            hint = ", ".join(f"{n} -> {c}" for n, c in near.items())
            parts.append(f"they look like classes ({hint}): map them with {self._command('class_map', near)}")
        if others:
            grow = self._command("classes", classes + others)
            drop = self._command("class_map", dict.fromkeys(others))
            parts.append(f"add {', '.join(others)} to the classes with {grow}, or drop them with {drop}")
        return "; ".join(parts)

    def _command(self, option: str, value: dict[str, str | None] | list[str]) -> str:
        """``dataset.<option>=<value>`` (or ``--class-map``/``--classes``) as typed in a shell."""
        if self.syntax == "argparse":
            items = [f"{k}={v or ''}" for k, v in value.items()] if isinstance(value, dict) else value
            return shell(f"--{option.replace('_', '-')}", *items)
        build = dict_override if isinstance(value, dict) else list_override
        override = build(f"dataset.{option}", value)
        if override is None:  # a key Hydra's grammar cannot spell (e.g. non-ASCII): the dataset YAML can
            return f"this line in your configs/dataset/*.yaml: {option}: {yaml_flow(value)}"
        return shell(override)

    def thing_classes(self, source: str) -> list[str]:
        """The final class list; raises for labels outside ``classes`` (unless ``unknown="skip"``).

        Args:
            source (str): the annotation file or folder (named in the error).

        Returns:
            list[str]: class names, index = category_id.
        """
        if self.classes is None:
            return sorted(self.seen)
        unknown = self.unknown_labels()
        if unknown and self.unknown == "error":
            raise self._unknown_error(source, unknown)
        return list(self.classes)

    def assign(self, dicts: Iterable[dict], source: str, stats: LoadStats | None = None) -> list[str]:
        """Replace each annotation's pending class name by its ``category_id`` (in place).

        Instances with an unknown label are dropped (and counted in ``stats``) when ``unknown="skip"``,
        or when ``stats`` is lenient (the error is then recorded as a problem).

        Args:
            dicts (iterable[dict]): Detectron2 dataset dicts with ``annotations[i][PENDING_NAME]``.
            source (str): the annotation file or folder (named in errors).
            stats (LoadStats or None): where dropped instances are counted.

        Returns:
            list[str]: thing_classes.
        """
        unknown = self.unknown_labels()
        if unknown and self.unknown == "error":
            if stats is None:
                raise self._unknown_error(source, unknown)
            stats.problem(self._unknown_error(source, unknown), "unknown label")  # raises when strict
        classes = sorted(self.seen) if self.classes is None else list(self.classes)
        ids = {c: i for i, c in enumerate(classes)}
        for d in dicts:
            kept = []
            for ann in d["annotations"]:
                name = ann.pop(PENDING_NAME, None)
                if name is not None and name not in ids:
                    if stats is not None:
                        where = self.first_seen.get(name, str(d.get("image_id")))
                        stats.skip(f"unknown label '{name}'", where)
                    continue
                if name is not None:
                    ann["category_id"] = ids[name]
                kept.append(ann)
            d["annotations"] = kept
        return classes
