"""Label Studio JSON_MIN export -> Label Studio tasks (the ``labelstudio_min`` parser of
:func:`~maskseg_d2.data.formats.load_dataset`).

JSON_MIN (``Converter.convert_to_json_min`` in label-studio-sdk) writes one record per *non-cancelled
annotation*, newest first: the task's ``data`` fields at top level, ``id`` (the task), ``annotator``,
``annotation_id``, ``created_at``, ``updated_at``, ``lead_time``, and one key per control tag
(``from_name``) holding the list of its region ``value`` dicts with ``original_width`` and
``original_height`` merged in and the result ``type`` removed. A task without annotations becomes one
record with ``annotation_id: null``; a task whose annotations were all cancelled is left out.

The records are turned back into Label Studio tasks (records of one task id become its annotations;
the region type is told by the ``*labels`` key of the value) and loaded by the JSON importer, so both
formats give the same instances (``image_id`` = the task id). ``ground_truth`` is not exported, so the
pick policy falls back to the most recently updated annotation: several annotators' records of one task
are picked by ``updated_at``.
"""
from __future__ import annotations

from typing import Any

from ..errors import UserError, fail
from .images import IMAGE_EXTENSIONS
from .loading import LoadStats

__all__ = ["is_json_min", "min_records_to_tasks"]

META_KEYS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
             "history", "was_cancelled", "completed_by")
_SIZE_KEYS = ("original_width", "original_height")


def is_json_min(doc: Any) -> bool:
    """bool: True when ``doc`` looks like a JSON_MIN export (records with ``annotation_id``, no ``data``)."""
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict):
        return False
    first = doc[0]
    return "annotation_id" in first and "data" not in first and "annotations" not in first


def _region_type(value: dict) -> str:
    """The Label Studio result type of a flattened region value: its ``*labels`` key."""
    labels = [k for k in value if k.endswith("labels") and isinstance(value[k], list)]
    if len(labels) == 1:
        return labels[0]
    if "rle" in value:
        return "brushlabels"
    return "unlabelled region"


def _region_results(record: dict, rwhere: str) -> tuple[dict, list[dict]]:
    """Split a record into task data (strings/scalars) and results rebuilt from the region lists."""
    data, results = {}, []
    for key, value in record.items():
        if key in META_KEYS or value == []:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for j, region in enumerate(value):
                res_value = {k: v for k, v in region.items() if k not in _SIZE_KEYS}
                results.append({"id": f"{key}[{j}]", "type": _region_type(region), "from_name": key,
                                "value": res_value, **{k: region[k] for k in _SIZE_KEYS if k in region}})
        elif isinstance(value, (str, int, float)) or value is None:
            data[key] = value  # task data (the image URI ...) or a collapsed Choices/TextArea answer
        elif isinstance(value, list):
            results.append({"id": key, "type": f"{key} field", "value": {}})  # e.g. multi-choice answers
        else:
            raise fail(rwhere, f"field {key!r} is a JSON {type(value).__name__}",
                       "export the project again as JSON_MIN or, better, as JSON")
    return data, results


def _looks_like_image(v: Any) -> bool:
    return isinstance(v, str) and ("/" in v or v.lower().endswith(IMAGE_EXTENSIONS))


def _other_image(first: dict, data: dict) -> str:
    """'' when ``data`` names the same image as ``first`` (other annotators' records of one task may
    differ in collapsed Choices/TextArea answers, never in the image), else the two values."""
    for key in first.keys() & data.keys():
        a, b = first[key], data[key]
        if a != b and (_looks_like_image(a) or _looks_like_image(b)):
            return f"{key}: {a!r} vs {b!r}"
    return ""


def min_records_to_tasks(records: list, source: str, stats: LoadStats | None = None) -> list[dict]:
    """Rebuild Label Studio tasks from JSON_MIN records (one task per ``id``, in first-seen order).

    Args:
        records (list): the parsed JSON_MIN export.
        source (str): the file, named in errors.
        stats (LoadStats or None): a lenient one skips (and counts) an invalid record; else it raises.

    Returns:
        list[dict]: tasks in the JSON export's shape (``id``, ``data``, ``annotations``).
    """
    tasks: dict[Any, dict] = {}
    for i, rec in enumerate(records):
        try:
            _add_record(tasks, rec, f"{source}: record #{i}")
        except UserError as e:
            if stats is None:
                raise
            stats.problem(e, "invalid record")  # raises unless lenient
    return list(tasks.values())


def _add_record(tasks: dict[Any, dict], rec: Any, rwhere: str) -> None:
    if not isinstance(rec, dict) or "id" not in rec:
        raise fail(rwhere, "not a JSON_MIN record (an object with 'id')", "export the project as JSON")
    if isinstance(rec["id"], bool) or not isinstance(rec["id"], (int, str)):
        raise fail(rwhere, f"task id is {rec['id']!r}, expected an integer", "export the project again")
    data, results = _region_results(rec, f"{rwhere} (task {rec['id']})")
    task = tasks.setdefault(rec["id"], {"id": rec["id"], "data": data, "annotations": []})
    other = _other_image(task["data"], data)
    if other:  # same id, another photo: its regions would land on the wrong image
        raise fail(f"{rwhere} (task {rec['id']})", f"task id {rec['id']} appears again with another "
                   f"image ({other})", "export the project once, or keep each export in its own file")
    if rec.get("annotation_id") is None and not results:
        return  # the record of a task without annotations
    task["annotations"].append({
        "id": rec.get("annotation_id"), "result": results, "was_cancelled": False, "ground_truth": False,
        "created_at": rec.get("created_at"), "updated_at": rec.get("updated_at"),
    })
