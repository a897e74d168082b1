"""``dataset.source=labelstudio_api`` without a server: snapshots, the image cache's paths, and bad input.

What needs a server (pulls, tokens the server refuses, lost images) is in
tests/integration/test_labelstudio_project_pull.py, against the real Label Studio.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from maskseg_d2.data import register_dataset
from maskseg_d2.data.labelstudio_api import _save_snapshot, cache_path, canonical_export, find_project, project_url
from maskseg_d2.data.labelstudio_client import ConfigKeys, LabelStudioClient, read_token, refuse_config_token
from maskseg_d2.errors import UserError
from maskseg_d2.utils.secrets import env_secrets, redact

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "f00dfacef00dfacef00dfacef00dfacef00dface"


def _tasks() -> list[dict]:
    return [{"id": i, "data": {"image": f"/data/upload/1/0000000{i}-p{i}.jpg"}, "annotations": [
        {"id": 10 + i, "result": [{"type": "polygonlabels", "value": {"points": [[1, 2], [3, 4], [5, 1]]}}]}]}
        for i in range(1, 4)]


def _shuffled(value, rng: random.Random):
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def test_snapshot_hash_is_the_content_not_the_order(tmp_path):
    tasks = _tasks()
    rng = random.Random(0)
    reordered = _shuffled(tasks, rng)[::-1]  # the server's key and task order may change between pulls
    assert canonical_export(reordered, "x") == canonical_export(tasks, "x")
    path, sha = _save_snapshot(canonical_export(tasks, "x"), tmp_path / "snapshots")
    assert _save_snapshot(canonical_export(reordered, "x"), tmp_path / "snapshots") == (path, sha)
    assert json.loads(Path(path).read_text()) == tasks and Path(path).name == f"{sha}.json"
    tasks[1]["annotations"][0]["result"][0]["value"]["points"][0] = [1, 2.5]  # one vertex moved
    _, edited = _save_snapshot(canonical_export(tasks, "x"), tmp_path / "snapshots")
    assert edited != sha
    assert sorted(os.listdir(tmp_path / "snapshots")) == sorted([f"{sha}.json", f"{edited}.json"])  # no temp left
    with pytest.raises(UserError, match="the export is not a list of tasks"):
        canonical_export({"detail": "x"}, "x")


@pytest.mark.parametrize("uri,expected", [
    ("/data/upload/3/1a2b3c4d-car%20park.jpg", "upload/3/1a2b3c4d-car park.jpg"),
    ("/storage-data/uploaded/?filepath=upload/3/1a2b3c4d-a.jpg", "upload/3/1a2b3c4d-a.jpg"),
    ("/data/local-files/?d=photos/night/a.jpg", "photos/night/a.jpg"),
    ("https://example.com:8443/img/a%20b.png?sig=1", "url/example.com_8443/img/a b.png"),
    ("/data/local-files/?d=../../etc/passwd", None),
    ("/data/local-files/?d=photos/../../x.jpg", None),
    ("/data/upload/../../x.jpg", None),
    ("s3://bucket/night/a.jpg", "cloud/bucket/night/a.jpg"),
    ("gs://bucket/../../a.jpg", None),
    ("ftp://host/a.jpg", None),
    ("photos/a.jpg", None),
])
def test_cache_paths_stay_inside_the_cache(uri, expected):
    assert cache_path(uri) == (PurePosixPath(expected) if expected else None)


def test_project_url():
    assert project_url("http://localhost:8080/projects/3/data?tab=5&task=9") == ("http://localhost:8080", 3)
    assert project_url("https://ls.example.com/sub/projects/12") == ("https://ls.example.com/sub", 12)
    assert project_url("datasets/projects/3/labelstudio.json") is None
    assert project_url("http://localhost:8080/projects/") is None


def test_token_from_a_file_is_a_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert read_token(tmp_path / "token") == TOKEN
    assert redact(f"Authorization: Token {TOKEN}") == "Authorization: Token ***"
    with pytest.raises(UserError, match=r"^Label Studio: no API token \(LABEL_STUDIO_API_KEY is empty or unset\) "
                                        "— set LABEL_STUDIO_API_KEY"):
        read_token(None)
    with pytest.raises(UserError, match="dataset.token_file=.*nope: cannot read it"):
        read_token(tmp_path / "nope")
    assert read_token(None, required=False) == ""  # the ML backend: images that need no token
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="no API token .dataset.token_file=.*empty is empty or unset."):
        read_token(tmp_path / "empty", required=False)  # a token file that holds none is a mistake
    assert env_secrets({"LABEL_STUDIO_API_KEY": TOKEN[::-1]}) == {TOKEN[::-1]}  # redacted from every run's files


def test_a_token_in_any_config_section_is_refused_by_name_never_by_value():
    secret = "abcdef0123456789"
    for section, keys, name in (({"api_key": secret}, ConfigKeys(), "dataset.api_key"),
                                ({"access_token": secret}, ConfigKeys(token_file_key="labelstudio.token_file"),
                                 "labelstudio.access_token"),
                                ({"token": secret}, ConfigKeys(token_file_key="token_file"), "token")):
        with pytest.raises(UserError) as e:
            refuse_config_token(section, keys)
        assert str(e.value) == (f"{name}: a token never goes in a config (it would be saved with the run's files) "
                                f"— set LABEL_STUDIO_API_KEY, or {keys.token_file_key} to a file holding it")
    # settings named like tokens are not tokens; an empty one is not set
    refuse_config_token({"token_file": "t.txt", "image_key": "img", "max_tokens": 3, "token": None, "api_key": ""})


class _Projects:
    """A client stub that counts the requests find_project makes."""

    url, keys = "http://ls:8080", ConfigKeys()

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.detail = {3: {"id": 3, "title": "cars", "label_config": "<View/>"}}

    def projects(self, what: str) -> list[dict]:
        self.calls.append("list")
        return [{"id": 3, "title": "cars"}, {"id": 4, "title": "trees"}]

    def get_json(self, path: str, what: str, params=None, missing_ok: bool = False):
        self.calls.append(path)
        pid = int(path.strip("/").rsplit("/", 1)[-1])
        assert missing_ok or pid in self.detail
        return self.detail.get(pid)


def test_find_project_fetches_the_project_once():
    for project, calls in ((3, ["/api/projects/3/"]), ("3", ["/api/projects/3/"]),
                           ("cars", ["list", "/api/projects/3/"])):
        client = _Projects()
        assert find_project(client, project) == (3, "cars", client.detail[3])
        assert client.calls == calls, project
    client = _Projects()
    with pytest.raises(UserError, match=r"^dataset.project=9: no project 9 at http://ls:8080 that this token can see"):
        find_project(client, 9)
    assert client.calls == ["/api/projects/9/", "list"]  # the listing tells a server that is not Label Studio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(tmp_path, **extra) -> dict:
    return {"name": "live", "root": str(tmp_path), "source": "labelstudio_api", "url": "http://127.0.0.1:9",
            "project": 3, **extra}


def test_bad_config_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    with pytest.raises(UserError, match=r"^dataset.url=localhost:8080: not an http\(s\) URL"):
        register_dataset(_cfg(tmp_path, url="localhost:8080"))
    with pytest.raises(UserError, match="dataset.token: a token never goes in a config") as e:
        register_dataset(_cfg(tmp_path, token="abcdef0123456789"))
    assert "abcdef0123456789" not in str(e.value)
    with pytest.raises(UserError, match="needs dataset.url and dataset.project"):
        register_dataset(_cfg(tmp_path, url=None))
    with pytest.raises(UserError, match="dataset.source=labelstudio: unknown source — use one of files, "):
        register_dataset(_cfg(tmp_path, source="labelstudio"))
    with pytest.raises(UserError, match=r"dataset.snapshot=abcdef12: no snapshot\(s\) match in .*snapshots "
                                        r"\(saved: none\)"):
        register_dataset(_cfg(tmp_path, snapshot="abcdef12"))
    assert not (tmp_path / "snapshots").exists()


def test_refused_connection_exits_2_with_one_line(tmp_path):
    """Through tools/convert.py, as a user types it: nothing listens on the port."""
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_API_KEY": TOKEN}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "convert.py"), f"http://127.0.0.1:{port}/projects/3",
                           "--image-root", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: dataset.url=http://127.0.0.1:{port}: cannot reach Label Studio at "
                                        f"http://127.0.0.1:{port} (connection refused) — start Label Studio, or "
                                        "fix dataset.url"]
    assert TOKEN not in proc.stdout + proc.stderr and not any(tmp_path.iterdir())


def test_client_sends_no_token_to_other_hosts():
    client = LabelStudioClient("http://127.0.0.1:8080/", TOKEN)
    assert client.url == "http://127.0.0.1:8080"
    assert client.is_own("http://127.0.0.1:8080/data/upload/1/a.jpg")
    assert not client.is_own("http://127.0.0.1:8081/a.jpg") and not client.is_own("https://127.0.0.1:8080/a.jpg")
    assert not client.is_own("http://127.0.0.1:8080@evil.example.com/a.jpg")


def test_cloud_images_copied_into_the_cache_are_found(tmp_path):
    """s3:// tasks are not downloaded (Label Studio holds the keys); a copy at the path named is used."""
    from PIL import Image

    from maskseg_d2.data import load_dataset
    from maskseg_d2.data.labelstudio_api import IMAGE_CACHE, _fetch_images

    result = {"type": "rectanglelabels", "original_width": 40, "original_height": 30, "value": {
        "x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["car"]}}
    tasks = [{"id": i, "data": {"image": f"s3://bucket/night/{n}.jpg"}, "annotations": [{"id": i, "result": [result]}]}
             for i, n in ((1, "a"), (2, "b"))]
    cache = tmp_path / IMAGE_CACHE
    (cache / "cloud" / "bucket" / "night").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(cache / "cloud" / "bucket" / "night" / "a.jpg")
    fetched, missing = _fetch_images(None, tasks, cache, None, "ground_truth_then_latest")
    assert (fetched, missing) == (0, [f"task 2: s3://bucket/night/b.jpg (cloud storage: copy it to "
                                      f"{cache / 'cloud/bucket/night/b.jpg'})"])
    (tmp_path / "snap.json").write_bytes(canonical_export(tasks[:1], "x"))
    (record,) = load_dataset(tmp_path / "snap.json", cache, fmt="labelstudio")
    assert record["file_name"] == str(cache / "cloud" / "bucket" / "night" / "a.jpg")
    assert record["annotations"][0]["bbox"] == pytest.approx([4, 3, 20, 15])
