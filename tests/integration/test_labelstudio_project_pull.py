"""``dataset.source=labelstudio_api`` against the real Label Studio server (tests/integration/conftest.py).

A project is built through the API as a user builds one: demo photos uploaded (tasks
``/data/upload/<project>/<8 hex>-<name>``), one more photo served by local storage
(``/data/local-files/?d=...``), annotations (polygons, rotated rectangles, brush masks) created on each task.
The reference is the same project's JSON export as the UI downloads it, saved to a file and read by the file
importer with the user's own photos: pulling through the API must register the same instances.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset, register_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.data.images import normalize_name
from maskseg_d2.data.labelstudio_paths import resolve_image, upload_names
from maskseg_d2.engine.run import Run
from maskseg_d2.errors import UserError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["car", "sign board"]
TAGS = {"polygonlabels": "poly", "rectanglelabels": "rect", "brushlabels": "brush"}
LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="poly" toName="image"><Label value="car"/><Label value="sign board"/></PolygonLabels>
  <RectangleLabels name="rect" toName="image"><Label value="car"/><Label value="sign board"/></RectangleLabels>
  <BrushLabels name="brush" toName="image"><Label value="car"/><Label value="sign board"/></BrushLabels>
</View>"""


def _results(task: dict) -> list[dict]:
    return [dict(r, from_name=TAGS[r["type"]]) for r in task["annotations"][0]["result"]]


@pytest.fixture(scope="module")
def project(labelstudio, demo_root, tmp_path_factory) -> dict:
    """A live project: 4 uploaded demo photos and 1 local-storage photo, each annotated through the API.

    Returns:
        dict: ``id``, ``title``, ``photos`` (the user's own copies of the photos, for the manual export).
    """
    ls = labelstudio
    demo = {Path(resolve_image(t["data"]["image"], demo_root / "images")).name: t
            for t in json.loads((demo_root / "labelstudio.json").read_text())}
    names = sorted(n for n, t in demo.items() if t["annotations"] and t["annotations"][0]["result"])
    chosen = [n for n in names if " " in n][:1] + [n for n in names if " " not in n][:4]
    photos = tmp_path_factory.mktemp("own_photos")
    for name in chosen:
        shutil.copy(demo_root / "images" / name, photos / name)
    pid = ls.post("/api/projects", {"title": "maskseg live", "label_config": LABEL_CONFIG})["id"]
    assert ls.upload(pid, [photos / n for n in chosen[:4]])["task_count"] == 4
    for task in ls.tasks(pid):
        uploaded = task["data"]["image"].rsplit("/", 1)[1]
        (name,) = [n for n in chosen if normalize_name(n) in map(normalize_name, upload_names(uploaded))]
        ls.post(f"/api/tasks/{task['id']}/annotations/", {"result": _results(demo[name])})
    local = ls.files_root / "live"
    local.mkdir()
    shutil.copy(photos / chosen[4], local / chosen[4])
    ls.post("/api/storages/localfiles", {"project": pid, "path": str(local), "title": "live", "use_blob_urls": True})
    ls.post(f"/api/projects/{pid}/import", [{"data": {"image": f"/data/local-files/?d=live/{chosen[4]}"},
                                             "annotations": [{"result": _results(demo[chosen[4]])}]}])
    return {"id": pid, "title": "maskseg live", "photos": photos, "names": chosen}


def _masks(record: dict) -> list[tuple[int, np.ndarray]]:
    out = []
    for a in record["annotations"]:
        seg = a["segmentation"]
        mask = (mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool) if isinstance(seg, dict)
                else rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], record["height"], record["width"]))
        out.append((a["category_id"], mask))
    return out


def _original_name(path: str) -> str:
    return normalize_name(upload_names(Path(path).name)[-1])


def _dataset(root: Path, ls, pid, **extra) -> dict:
    return {"name": "live", "root": str(root), "source": "labelstudio_api", "url": ls.url, "project": pid,
            "classes": CLASSES, "format": "labelstudio", "val_fraction": 0.25, **extra}


def test_pulled_project_registers_what_its_file_export_gives(labelstudio, project, tmp_path, monkeypatch):
    ls, pid = labelstudio, project["id"]
    export = tmp_path / "export.json"  # the reference: Export -> JSON in the UI, read from the file
    export.write_text(json.dumps(ls.export(pid)))
    manual = {normalize_name(Path(d["file_name"]).name): d
              for d in load_dataset(export, project["photos"], fmt="labelstudio", classes=CLASSES)}
    assert len(manual) == 5

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)  # legacy token
    root = tmp_path / "live"
    info = register_dataset(_dataset(root, ls, project["title"]))  # the project by its title
    pulled = DatasetCatalog.get(info.train_name) + DatasetCatalog.get(info.val_name)
    assert info.source["project"] == pid and info.source["tasks"] == 5 and info.source["url"] == ls.url
    assert Path(info.source["path"]).name == f"{info.source['sha']}.json"
    assert sorted(_original_name(d["file_name"]) for d in pulled) == sorted(manual)
    for d in pulled:
        ref = manual[_original_name(d["file_name"])]
        assert Path(d["file_name"]).read_bytes() == Path(ref["file_name"]).read_bytes()
        got, want = _masks(d), _masks(ref)
        assert [c for c, _ in got] == [c for c, _ in want] and len(got) > 0
        for (_, a), (_, b) in zip(got, want):
            assert (a & b).sum() / (a | b).sum() >= 0.99

    again = register_dataset(_dataset(root, ls, pid))  # unchanged project: same snapshot, images cached
    assert again.source["sha"] == info.source["sha"] and len(list((root / "snapshots").iterdir())) == 1
    task = ls.tasks(pid)[0]
    ann = task["annotations"][0]
    ls.request("PATCH", f"/api/annotations/{ann['id']}/", {"result": ann["result"][:-1]})
    edited = register_dataset(_dataset(root, ls, pid))
    assert edited.source["sha"] != info.source["sha"] and edited.num_instances == info.num_instances - 1
    assert edited.dataset_hash != info.dataset_hash
    ls.request("PATCH", f"/api/annotations/{ann['id']}/", {"result": ann["result"]})  # as it was, for the others

    pinned = register_dataset(_dataset(root, ls, pid, snapshot=info.source["sha"][:12], url="http://127.0.0.1:9"))
    assert pinned.dataset_hash == info.dataset_hash  # offline: the saved snapshot and the cached images


def _personal_token(ls) -> str:
    """A personal access token (JWT refresh token) of the test user, created once per server."""
    if not hasattr(ls, "personal_token"):
        ls.personal_token = ls.post("/api/token/", {})["token"]
    return ls.personal_token


@pytest.mark.slow
def test_training_from_a_live_project_records_it_and_never_the_token(labelstudio, project, train_tiny,
                                                                     tmp_path_factory, monkeypatch, capfd):
    ls, pid = labelstudio, project["id"]
    token = _personal_token(ls)
    assert token.count(".") == 2
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    root = tmp_path_factory.mktemp("live_train")
    run_dir, _ = train_tiny("solver.max_iter=2", "solver.eval_period=0", "num_vis=0", f"dataset.root={root}",
                            "dataset.source=labelstudio_api", f"dataset.url={ls.url}", f"dataset.project={pid}")
    info = json.loads((run_dir / "run_info.json").read_text())["dataset"]
    snapshot = root / "snapshots" / f"{info['source']['sha']}.json"
    assert info["source"]["project"] == pid and info["source"]["tasks"] == 5 and snapshot.is_file()
    assert info["source"]["path"] == str(snapshot)
    out, err = capfd.readouterr()
    secrets = [token, ls.token, token.split(".")[2]]  # the JWT's signature alone is secret enough
    for path in [*run_dir.rglob("*"), *root.rglob("*.json")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    assert not any(s in out + err for s in secrets)

    monkeypatch.delenv("LABEL_STUDIO_API_KEY")  # evaluating the run later: its snapshot, no server, no token
    assert Run.open(str(run_dir), device="cpu").dataset.dataset_hash == info["hash"]


def test_bad_inputs_are_one_line_each(labelstudio, project, tmp_path, monkeypatch):
    ls, pid = labelstudio, project["id"]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    with pytest.raises(UserError, match=r"refused the API token \(HTTP 401\) — set LABEL_STUDIO_API_KEY"):
        register_dataset(_dataset(tmp_path, ls, pid))
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    with pytest.raises(UserError, match="no API token .*set LABEL_STUDIO_API_KEY"):
        register_dataset(_dataset(tmp_path, ls, pid))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)
    with pytest.raises(UserError, match="no project 999 at .* — use the id"):
        register_dataset(_dataset(tmp_path, ls, 999))
    with pytest.raises(UserError, match="no project titled 'nope'.*'maskseg live'"):
        register_dataset(_dataset(tmp_path, ls, "nope"))
    with pytest.raises(UserError, match=r"/static answered HTTP 404 for /api/projects/: is it a Label Studio server"):
        register_dataset(_dataset(tmp_path, ls, pid, url=ls.url + "/static"))
    assert not (tmp_path / "snapshots").exists()  # nothing written by a pull that failed


def test_a_task_whose_image_is_gone_is_named(labelstudio, project, tmp_path, monkeypatch):
    ls = labelstudio
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)
    pid = ls.post("/api/projects", {"title": "maskseg gone", "label_config": LABEL_CONFIG})["id"]
    photo = project["photos"] / project["names"][0]
    ls.upload(pid, [photo, project["photos"] / project["names"][1]])
    tasks = ls.tasks(pid)
    for task in tasks:
        ls.post(f"/api/tasks/{task['id']}/annotations/", {"result": []})
    ls.post(f"/api/projects/{pid}/import", [{"data": {"image": f"/data/upload/{pid}/0badc0de-gone.jpg"},
                                             "annotations": [{"result": []}]}])
    # Label Studio 1.23.2 answers HTTP 500 (not 404) for an upload gone from its disk
    with pytest.raises(UserError, match=rf"1 labelled task\(s\) show an image the server no longer has "
                                        rf"\(task \d+: /data/upload/{pid}/0badc0de-gone.jpg \(HTTP 500\)\)"):
        register_dataset(_dataset(tmp_path, ls, pid))
    info = register_dataset(_dataset(tmp_path, ls, pid, on_error="skip"))
    assert info.num_train + info.num_val == 2 and info.source["tasks"] == 3


def _convert(*args: str, token: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABEL_STUDIO_API_KEY": token}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert.py"), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_convert_pulls_a_project_url(labelstudio, project, tmp_path):
    """tools/convert.py with the project's address as the browser shows it: a snapshot, then COCO."""
    ls, pid = labelstudio, project["id"]
    page = f"{ls.url}/projects/{pid}/data?tab=1"
    bad = _convert(page, "--image-root", str(tmp_path), token="0" * 40)
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        f"error: dataset.url={ls.url}: Label Studio at {ls.url} refused the API token (HTTP 401) — set "
        "LABEL_STUDIO_API_KEY to your Access Token (Label Studio: Account & Settings), or dataset.token_file to a "
        "file holding it"]
    assert not any(tmp_path.iterdir())
    good = _convert(page, "--image-root", str(tmp_path), "-o", str(tmp_path / "coco.json"),
                    "--classes", *CLASSES, token=ls.token)
    assert good.returncode == 0, good.stderr
    (snapshot,) = (tmp_path / "snapshots").iterdir()
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert len(coco["images"]) == 5 and all((tmp_path / "labelstudio_images" / i["file_name"]).is_file()
                                            for i in coco["images"])
    assert ls.token not in good.stdout + good.stderr and snapshot.stem in good.stdout + good.stderr
