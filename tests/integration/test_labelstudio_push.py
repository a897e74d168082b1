"""``labelstudio.push``: predictions posted to a real Label Studio 1.23.2 (tests/integration/conftest.py).

The project is built as a user builds one, with its own tag names (``outline``, ``paint``, ``photo``,
``$img``) so the regions can only land if they are read from the project: two photos uploaded (one name with a
space: Label Studio stores ``<8 hex>-name_with_underscores``), one served by local storage
(``/data/local-files/?d=push/<name>``), one by URL, one task whose photo is not an input, and one input photo
without a task.

The predictions are FIXED, not a trained model's: the tiny run's scores are near zero and its masks noise, and
what is under test is the match and the round trip, not the model. Each image gets a one-part ellipse (sent as a
polygon) and a two-part mask (sent as a brush mask), so ``shape=auto`` takes both paths. The reference for the
round trip is those masks themselves: accepted in Label Studio (an annotation made of each prediction, as the
"accept" button does), exported, and read by our importer, they come back with their class at IoU >= 0.99.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.data.images import normalize_name
from maskseg_d2.errors import UserError
from maskseg_d2.predict import Detections, predict
from maskseg_d2.predict import runner as predict_runner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["car", "sign board"]
LABEL_CONFIG = """<View>
  <Image name="photo" value="$img"/>
  <PolygonLabels name="outline" toName="photo"><Label value="car"/><Label value="sign board"/></PolygonLabels>
  <BrushLabels name="paint" toName="photo"><Label value="car"/><Label value="sign board"/></BrushLabels>
</View>"""


def fixed_masks(h: int, w: int) -> list[tuple[int, np.ndarray]]:
    """(class, mask) of every image: a car ellipse (one part: a polygon) and a sign in two parts (a brush mask)."""
    car = np.zeros((h, w), np.uint8)
    cv2.ellipse(car, (w // 3, h // 2), (w // 5, h // 4), 15, 0, 360, 1, -1)
    sign = np.zeros((h, w), np.uint8)
    sign[5:25, w - 40:w - 25] = 1
    sign[30:45, w - 40:w - 10] = 1
    return [(0, car.astype(bool)), (1, sign.astype(bool))]


class FixedPredictor:
    """Stands in for the model: :func:`fixed_masks` on every image (``BatchPredictor``'s interface)."""

    def __init__(self, *args, **kwargs) -> None:
        self.empty_masks, self.backend = 0, "eager"

    def preprocess(self, bgr: np.ndarray) -> tuple[int, int]:
        return bgr.shape[:2]

    def __call__(self, sizes: list[tuple[int, int]]) -> list[Detections]:
        out = []
        for h, w in sizes:
            classes, masks = zip(*fixed_masks(h, w))
            boxes = np.array([[0, 0, w, h]] * len(masks), np.float32)
            out.append(Detections(boxes, np.array([0.9, 0.7], np.float32), np.array(classes, np.int64),
                                  np.stack(masks)))
        return out


@pytest.fixture(scope="module")
def live(labelstudio, demo_root, tmp_path_factory) -> dict:
    """The project and the input folder (see the module docstring)."""
    ls = labelstudio
    names = sorted(p.name for p in (demo_root / "images").glob("*.jpg"))
    spaced = next(n for n in names if " " in n)
    plain = [n for n in names if " " not in n]
    upload, local, url, no_task, not_input = [spaced, plain[0]], plain[1], plain[2], plain[3], plain[4]
    photos = tmp_path_factory.mktemp("push") / "photos"
    photos.mkdir()
    for name in [*upload, local, url, no_task]:
        shutil.copy(demo_root / "images" / name, photos / name)
    pid = ls.post("/api/projects", {"title": "maskseg push", "label_config": LABEL_CONFIG})["id"]
    assert ls.upload(pid, [photos / n for n in upload] + [demo_root / "images" / not_input])["task_count"] == 3
    (ls.files_root / "push").mkdir()
    shutil.copy(photos / local, ls.files_root / "push" / local)
    ls.post("/api/storages/localfiles", {"project": pid, "path": str(ls.files_root / "push"), "title": "live",
                                         "use_blob_urls": True})
    ls.post(f"/api/projects/{pid}/import", [{"img": f"/data/local-files/?d=push/{local}"},
                                            {"img": f"http://photos.example.invalid/a/{url}"}])
    tasks = {}
    for t in ls.tasks(pid):
        image = t["data"]["img"]
        (name,) = [n for n in [*upload, local, url, not_input]
                   if image.endswith("-" + normalize_name(n)) or image.endswith("/" + n)]
        tasks[name] = t["id"]
    assert f"/data/upload/{pid}/" in ls.get(f"/api/tasks/{tasks[spaced]}/")["data"]["img"]
    return {"id": pid, "photos": photos, "tasks": tasks, "inputs": [*upload, local, url], "no_task": no_task,
            "not_input": not_input}


def _predict(run: Path, photos: Path, out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("predict", overrides=[f"run={run}", f"input={photos}", f"output={out}", "device=cpu",
                                            "progress=false", "save=[overlay]", *overrides])
    return predict(cfg)


def _ours(ls, task: int, version: str) -> list[dict]:
    return [p for p in ls.get(f"/api/predictions/?task={task}") if p["model_version"] == version]


@pytest.mark.slow
def test_push_lands_on_the_right_tasks_replaces_and_round_trips(labelstudio, live, predict_run, tmp_path,
                                                                 monkeypatch, capfd):
    ls, pid = labelstudio, live["id"]
    monkeypatch.setattr(predict_runner, "BatchPredictor", FixedPredictor)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)
    version = predict_run.name
    other = live["tasks"][live["inputs"][0]]
    ls.post("/api/predictions/", {"task": other, "model_version": "someone else", "score": 0.5, "result": []})

    push = ["labelstudio.push=maskseg push", f"labelstudio.url={ls.url}"]
    summary = _predict(predict_run, live["photos"], tmp_path / "one", *push)
    report = json.loads(Path(summary.files["labelstudio_push"]).read_text())
    assert report["tasks"] == 4 and report["regions"] == 8 and report["replaced"] == 0
    assert report["images_without_task"] == [live["no_task"]]
    assert report["tasks_without_image"] == [live["tasks"][live["not_input"]]] and report["unmatched"] == []
    for name in live["inputs"]:
        (pred,) = _ours(ls, live["tasks"][name], version)
        assert pred["score"] == pytest.approx(0.8)
        assert sorted((r["type"], r["from_name"], r["to_name"], r["value"][r["type"]][0]) for r in pred["result"]) \
            == [("brushlabels", "paint", "photo", "sign board"), ("polygonlabels", "outline", "photo", "car")]
    assert not _ours(ls, live["tasks"][live["not_input"]], version)

    first = {n: _ours(ls, live["tasks"][n], version)[0]["id"] for n in live["inputs"]}
    again = _predict(predict_run, live["photos"], tmp_path / "two", *push[1:], f"labelstudio.push={pid}")
    assert json.loads(Path(again.files["labelstudio_push"]).read_text())["replaced"] == 4
    for name in live["inputs"]:
        (pred,) = _ours(ls, live["tasks"][name], version)  # one set: the new one
        assert pred["id"] != first[name]
    assert [p["model_version"] for p in ls.get(f"/api/predictions/?task={other}")].count("someone else") == 1

    for name in live["inputs"]:  # accept: an annotation made of the prediction, as the UI's accept button does
        task = live["tasks"][name]
        ls.post(f"/api/tasks/{task}/annotations/", {"result": _ours(ls, task, version)[0]["result"]})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(ls.export(pid)))
    records = load_dataset(export, live["photos"], fmt="labelstudio", classes=CLASSES)
    assert sorted(Path(r["file_name"]).name for r in records) == sorted(live["inputs"])
    for r in records:
        want = fixed_masks(r["height"], r["width"])
        got = [(a["category_id"], _mask(a, r["height"], r["width"])) for a in r["annotations"]]
        assert sorted(c for c, _ in got) == [0, 1]
        for c, mask in got:
            ref = want[c][1]
            assert (mask & ref).sum() / (mask | ref).sum() >= 0.99, (r["file_name"], c)

    cars = ls.post("/api/projects", {"title": "maskseg cars", "label_config": LABEL_CONFIG.replace(
        '<Label value="sign board"/>', "")})["id"]
    ls.upload(cars, [live["photos"] / live["inputs"][1]])
    with pytest.raises(UserError, match=r"class 'sign board' is not a label of the <BrushLabels name=\"paint\"> tag "
                                        r"\(its labels: car\) — add <Label value=\"sign board\"/>"):
        _predict(predict_run, live["photos"], tmp_path / "cars", f"labelstudio.push={cars}", push[1])
    out, err = capfd.readouterr()
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "export.json"]
    assert ls.token not in out + err and not any(ls.token.encode() in data for data in written)


def _mask(ann: dict, h: int, w: int) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, dict):
        return mask_util.decode(dict(seg, counts=seg["counts"].encode() if isinstance(seg["counts"], str)
                                     else seg["counts"])).astype(bool)
    return rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], h, w)


def test_bad_push_inputs_are_one_line_each(labelstudio, live, tmp_path, monkeypatch):
    ls, pid = labelstudio, live["id"]
    photos = str(live["photos"])
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)
    run = tmp_path / "no-run-needed"  # every check below comes before the run is opened
    with pytest.raises(UserError, match=r"^labelstudio.push=999: no project 999 at .* — use the id"):
        _predict(run, live["photos"], tmp_path / "o", "labelstudio.push=999", f"labelstudio.url={ls.url}")
    with pytest.raises(UserError, match=r"^labelstudio.push=3 needs labelstudio.url"):
        _predict(run, live["photos"], tmp_path / "o", "labelstudio.push=3")
    bare = ls.post("/api/projects", {"title": "maskseg boxes only", "label_config":
                                     '<View><Image name="i" value="$image"/><RectangleLabels name="r" toName="i">'
                                     '<Label value="car"/></RectangleLabels></View>'})["id"]
    with pytest.raises(UserError, match=r"no <PolygonLabels> or <BrushLabels> tag \(its tags: RectangleLabels\)"):
        _predict(run, live["photos"], tmp_path / "o", f"labelstudio.push={ls.url}/projects/{bare}/data")
    polygon_only = ls.post("/api/projects", {"title": "maskseg brushless", "label_config":
                                             '<View><Image name="i" value="$image"/><PolygonLabels name="p" '
                                             'toName="i"><Label value="car"/></PolygonLabels></View>'})["id"]
    with pytest.raises(UserError, match=r"labelstudio.shape=brush but the labeling config has no <BrushLabels>"):
        _predict(run, live["photos"], tmp_path / "o", f"labelstudio.push={polygon_only}", "labelstudio.shape=brush",
                 f"labelstudio.url={ls.url}")
    assert not (tmp_path / "o").exists()

    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), f"run={run}", f"input={photos}",
                          f"labelstudio.push={pid}", f"labelstudio.url={ls.url}"], capture_output=True, text=True,
                         env={**os.environ, "LABEL_STUDIO_API_KEY": "0" * 40}, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: labelstudio.url={ls.url}: Label Studio at {ls.url} refused the API token (HTTP 401) — set "
        "LABEL_STUDIO_API_KEY to your Access Token (Label Studio: Account & Settings), or labelstudio.token_file "
        "to a file holding it"], bad.stderr
    assert "0" * 40 not in bad.stdout + bad.stderr
