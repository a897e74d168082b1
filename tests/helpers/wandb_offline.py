"""Read what an *offline* W&B run logged, without uploading it: ``python -m helpers.wandb_offline <dir>``.

An offline run directory (``<run dir>/wandb/offline-run-<time>-<id>/``) holds media files under ``files/``
and every logged row in ``run-<id>.wandb``: protobuf ``Record`` messages in W&B's LevelDB-style log
(7-byte file header ``:W&B`` + magic + version; 32 KiB blocks; each chunk = crc32 (4) + length (2) +
type (1: full, 2: first, 3: middle, 4: last) + data). wandb >= 0.2x no longer ships a Python reader for
it, so this small one is used by the tests and for a quick look at offline runs.
"""
from __future__ import annotations

import glob
import json
import os
import struct
import sys
import time
from typing import Any, Iterator

__all__ = ["find_offline_runs", "iter_records", "read_history", "wait_until_finished"]

_HEADER = 7
_BLOCK = 32768
_CHUNK = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def find_offline_runs(wandb_dir: str) -> list[str]:
    """``<wandb_dir>/wandb/offline-run-*`` (or ``<wandb_dir>/offline-run-*``), oldest first."""
    runs = glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*")) + glob.glob(
        os.path.join(wandb_dir, "offline-run-*"))
    return sorted(r for r in runs if os.path.isdir(r))


def _chunks(buf: bytes) -> Iterator[tuple[int, bytes]]:
    pos = _HEADER
    while pos + _CHUNK <= len(buf):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK:  # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", buf[pos:pos + _CHUNK])
        pos += _CHUNK
        if pos + length > len(buf):
            return  # a chunk still being written
        if kind == 0 and length == 0:
            continue
        yield kind, buf[pos:pos + length]
        pos += length


def iter_records(run_dir: str) -> Iterator[Any]:
    """The protobuf ``Record`` messages of ``<run_dir>/run-*.wandb``, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file (not an offline W&B run dir)")
    with open(files[0], "rb") as f:
        buf = f.read()
    if buf[:4] != b":W&B":
        raise ValueError(f"{files[0]}: not a W&B transaction log")
    pending = b""
    for kind, data in _chunks(buf):
        pending = data if kind in (_FULL, _FIRST) else pending + data
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def wait_until_finished(run_dir: str, timeout: float = 60.0) -> bool:
    """Wait for the run's ``exit`` record: ``run.finish()`` returns before wandb's service has written it all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in iter_records(run_dir)):
                return True
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def read_history(run_dir: str, wait: float = 60.0) -> list[dict[str, Any]]:
    """Every ``run.log(...)`` row: ``[{"iteration": 19, "total_loss": 1.2, ...}, ...]`` (values JSON-decoded).

    Args:
        run_dir (str): an ``offline-run-*`` directory.
        wait (float): seconds to wait for a just-finished run to be fully written (0: read what is there).
    """
    if wait > 0:
        wait_until_finished(run_dir, wait)
    rows = []
    for record in iter_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def main(argv: list[str]) -> None:
    for run in find_offline_runs(argv[0]) if argv else []:
        last: dict[str, Any] = {}
        for row in read_history(run):
            last.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and not k.startswith("_")})
        print(run)
        for key in sorted(last):
            print(f"  {key}: {last[key]}")


if __name__ == "__main__":
    main(sys.argv[1:])
