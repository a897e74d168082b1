"""atomic_write: the old file or the whole new one, never a torn one, and no temp file left behind."""
from __future__ import annotations

import errno

import pytest

from maskseg_d2.utils.fileio import atomic_write, atomic_write_json, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "doc.json"
    atomic_write_text(path, '{"v": 1}')

    def disk_full(f):
        f.write(b'{"v": 2, "half')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        atomic_write(path, disk_full)
    assert e.value.filename == str(path)  # the error names the file being written
    assert path.read_text() == '{"v": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_text_is_utf8_and_surrogates_survive_when_asked(tmp_path):
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "name: café\n")
    assert path.read_bytes() == "name: café\n".encode()
    raw = b"path: /data/\xff.jpg\n".decode("utf-8", "surrogateescape")  # a non-UTF-8 file name kept as is
    atomic_write_text(path, raw, errors="surrogateescape")
    assert path.read_bytes() == b"path: /data/\xff.jpg\n"


def test_json_is_streamed_and_the_file_stays_open_for_fsync(tmp_path):
    path = tmp_path / "preds.json"
    atomic_write_json(path, [{"name": "café", "score": 0.5}], ensure_ascii=False)
    assert path.read_bytes() == '[{"name": "café", "score": 0.5}]'.encode()
    with pytest.raises(TypeError):  # not JSON serialisable: the old file stays
        atomic_write_json(path, [object()])
    assert path.read_bytes() == '[{"name": "café", "score": 0.5}]'.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["preds.json"]
