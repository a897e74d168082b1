"""``tools/serve.py`` as the ML backend of a real Label Studio (tests/integration/conftest.py's server).

The backend is connected as a user connects it through the API (``POST /api/ml`` with url, project and the Basic
auth the backend asks for), and Label Studio's own "Retrieve Predictions" action asks it for 3 uploaded photos. The
reference is the same run's model in this process (BatchPredictor on the same files): the predictions Label Studio
stored, accepted as annotations and exported, must give our importer back those instances (classes; brush masks at
IoU >= 0.99, polygons at IoU > 0.85 as the file round trip of tests/integration/test_labelstudio_roundtrip.py); and
what Label Studio stored is exactly what the backend answers for those tasks.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.engine.run import Run
from maskseg_d2.predict import BatchPredictor, read_bgr
from maskseg_d2.predict.annotations import is_simple_mask, mask_to_polygons

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["car", "sign board"]
# tag names and a data key of the project's own: the backend must read them from the config Label Studio sends
LABELS = "".join(f'<Label value="{c}"/>' for c in CLASSES)
CONFIG = (f'<View><Image name="photo" value="$picture"/><BrushLabels name="paint" toName="photo">{LABELS}'
          f'</BrushLabels><PolygonLabels name="outline" toName="photo">{LABELS}</PolygonLabels></View>')
MODEL = ["device=cpu", "score_threshold=0.0", "max_detections=4"]  # a 4-iteration model: low scores
USER, PASSWORD = "labelstudio", "a-backend-password-7f3e"  # Basic auth, as Connect Model sends it
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def _get(url: str, auth: bool = True) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH if auth else {}), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **AUTH})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


@pytest.fixture(scope="module")
def backend(labelstudio, tiny_run, tmp_path_factory):
    """``tools/serve.py`` on a free port, serving the tiny run; yields its URL once /health says UP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "LABEL_STUDIO_API_KEY": labelstudio.token, "MASKSEG_SERVE_PASSWORD": PASSWORD}
    cmd = [sys.executable, "tools/serve.py", f"run={tiny_run[0]}", f"port={port}", f"url={labelstudio.url}",
           f"basic_auth_user={USER}", *MODEL]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _get(url + "/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"tools/serve.py never became healthy:\n{log.read_text()[-3000:]}")
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_health_and_setup_answer_as_the_protocol_says(backend, tiny_run):
    url, _ = backend
    status, health = _get(url + "/health")
    assert status == 200 and health["status"] == "UP" and health["model_class"]
    assert _get(url + "/health", auth=False)[0] == 401
    status, setup = _post(url + "/setup", {"project": "1.1700000000", "schema": CONFIG, "hostname": "",
                                           "access_token": "", "extra_params": None})
    assert status == 200 and setup == {"model_version": tiny_run[0].name}


def _instances(record: dict) -> list[tuple[int, np.ndarray]]:
    out = []
    for a in record["annotations"]:
        seg, h, w = a["segmentation"], record["height"], record["width"]
        mask = (mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool) if isinstance(seg, dict)
                else rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], h, w))
        out.append((a["category_id"], mask, isinstance(seg, dict)))
    return out


def test_retrieve_predictions_stores_what_round_trips(labelstudio, backend, tiny_run, demo_root, tmp_path):
    ls, (url, log), run_dir = labelstudio, backend, tiny_run[0]
    photos = sorted((demo_root / "images").iterdir())[:3]
    pid = ls.post("/api/projects", {"title": "maskseg ml backend", "label_config": CONFIG})["id"]
    assert ls.upload(pid, photos)["task_count"] == 3
    ml = ls.post("/api/ml", {"url": url, "project": pid, "title": "maskseg", "auth_method": "BASIC_AUTH",
                             "basic_auth_user": USER, "basic_auth_pass": PASSWORD})
    assert ml["state"] == "CO", ml  # connected: /health and /setup answered
    done = ls.post(f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                   {"selectedItems": {"all": True, "excluded": []}})
    assert "3" in done["detail"]

    model = BatchPredictor(Run.open(str(run_dir), score_threshold=0.0, max_detections=4, device="cpu").d2cfg)
    reference = {p.name: model([model.preprocess(read_bgr(str(p)))])[0] for p in photos}
    tasks = ls.tasks(pid)
    _, direct = _post(url + "/predict", {"tasks": tasks, "label_config": CONFIG})  # what the backend answers
    for task, answer in zip(tasks, direct["results"]):
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == run_dir.name, log.read_text()[-2000:]
        assert prediction["result"] and prediction["score"] == pytest.approx(answer["score"])
        assert [(r["from_name"], r["to_name"], r["value"]) for r in prediction["result"]] == [
            (r["from_name"], r["to_name"], r["value"]) for r in answer["result"]]
        assert {r["from_name"] for r in answer["result"]} <= {"outline", "paint"}
    ls.post(f"/api/dm/actions?id=predictions_to_annotations&project={pid}",
            {"selectedItems": {"all": True, "excluded": []}})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(ls.export(pid)))
    loaded = load_dataset(export, photos[0].parent, fmt="labelstudio", classes=CLASSES)
    assert len(loaded) == 3
    for record in loaded:
        name = Path(record["file_name"]).name  # the importer found the uploaded photo in our folder
        dets = reference[name]
        kept = [k for k, m in enumerate(dets.masks) if not is_simple_mask(m) or mask_to_polygons(m, 0.7)]
        got = _instances(record)
        assert [c for c, _, _ in got] == dets.classes[kept].tolist(), name
        for (_, mask, exact), k in zip(got, kept):
            ours = dets.masks[k]
            iou = (mask & ours).sum() / max((mask | ours).sum(), 1)
            # brush RLE is exact, but this process's model may flip a pixel at 0.5 (other thread count)
            assert iou >= (0.99 if exact else 0.85), (name, k, iou)
