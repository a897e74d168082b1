"""JSON files the importers and evaluators read: :func:`read_json` turns every way a file can fail
(missing, unreadable, empty, truncated, not UTF-8/16/32, nested too deeply) into one actionable line.

Its messages are part of the error catalog (``scripts/error_catalog.py`` reads them from here).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import fail

__all__ = ["read_json"]


def read_json(path: str | os.PathLike, what: str = "file", setting: str = "dataset.annotations",
              fix: str = "export it again from the annotation tool") -> Any:
    """Read a JSON file; any problem becomes a one-line :class:`UserError` naming the file.

    Args:
        path (str or PathLike): the JSON file.
        what (str): what the file is, for the messages ("ground-truth file").
        setting (str): the config key or argument that gave the path, for "file not found".
        fix (str): what to do about a file that is not valid JSON.

    Returns:
        Any: the parsed document.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise fail(str(path), f"{what} not found", f"check the path ({setting})") from None
    except OSError as e:
        raise fail(str(path), f"cannot read the {what}: {e.strerror}",
                   "check the path and the file's permissions") from None
    if not raw.lstrip(b"\xef\xbb\xbf").strip():  # nothing but white space (and a UTF-8 BOM)
        raise fail(str(path), "the file is empty", fix)
    try:
        return json.loads(raw)  # bytes: UTF-8 with or without BOM, UTF-16/32 detected like the json docs say
    except json.JSONDecodeError as e:
        cut = e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated string")  # ran into the end
        hint = "the file looks truncated" if cut else "the file is not valid JSON"
        raise fail(str(path), f"invalid JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}",
                   f"{hint}; {fix}") from None
    except UnicodeDecodeError as e:  # json guesses UTF-8/16/32 from the first bytes
        raise fail(str(path), f"invalid JSON: byte {e.start} is not {e.encoding} text",
                   f"save it as UTF-8 JSON; {fix}") from None
    except (RecursionError, ValueError) as e:  # nested thousands deep; an integer of > 4300 digits
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0]
        raise fail(str(path), f"invalid JSON: {why}", fix) from None
