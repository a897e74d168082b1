"""Our Label Studio predictions JSON through a real Label Studio server and back through our importer.

Two ways users bring pre-annotations in, both checked:

* polygons, images served by Label Studio's local storage: the predictions JSON is imported as is
  (Import -> upload ``labelstudio_predictions.json``), ``data.image`` = ``/data/local-files/?d=...``;
* brush masks on photos uploaded through the UI (renamed ``<8 hex>-<name>``): each task gets our
  prediction through the API (``POST /api/predictions``), matched by file name.

Label Studio must list the predictions (model version, score, regions) as we wrote them; accepting them
as annotations (the "Create Annotations From Predictions" action) and exporting the project as JSON must
give our importer the same instances (count, class, mask).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskseg_d2.data import load_dataset
from maskseg_d2.data.images import normalize_name
from maskseg_d2.data.labelstudio_paths import upload_names
from maskseg_d2.predict import Detections, ExportOptions, OutputWriter, read_bgr
from maskseg_d2.predict.outputs import ImageItem
from maskseg_d2.predict.sources import output_stems

pytestmark = pytest.mark.integration

CLASSES = ["car", "sign board"]
LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image"><Label value="car"/><Label value="sign board"/></PolygonLabels>
  <BrushLabels name="brush" toName="image"><Label value="car"/><Label value="sign board"/></BrushLabels>
</View>"""


@pytest.fixture(scope="module")
def photos(demo_root, labelstudio) -> tuple[Path, dict[str, Detections]]:
    """4 demo photos (one with spaces in its name, one stored EXIF-rotated) under the server's document
    root, and 'predictions' for them: their ground truth with made-up scores."""
    from PIL import Image

    records = {
        Path(r["file_name"]).name: r
        for r in load_dataset(demo_root / "labelstudio.json", demo_root / "images", fmt="labelstudio", classes=CLASSES)
    }
    names = sorted(n for n in records if records[n]["annotations"])
    chosen = [n for n in names if " " in n][:1] + [n for n in names if " " not in n][:3]
    folder = labelstudio.files_root / "photos"
    folder.mkdir()
    dets = {}
    for i, name in enumerate(chosen):
        if i == 1:  # stored rotated, EXIF orientation 6: Label Studio shows it upright, like we predict it
            upright = Image.open(records[name]["file_name"])
            exif = Image.Exif()
            exif[0x0112] = 6
            upright.transpose(Image.Transpose.ROTATE_90).save(folder / name, quality=95, exif=exif.tobytes())
        else:
            shutil.copy(records[name]["file_name"], folder / name)
        d = Detections.from_record(records[name])
        d.scores[:] = np.linspace(0.97, 0.61, len(d))
        dets[name] = d
    return folder, dets


def _write_predictions(
    folder: Path, dets: dict[str, Detections], out: Path, shape: str, from_name: str
) -> list[dict]:
    writer = OutputWriter(
        str(out),
        ["labelstudio"],
        CLASSES,
        ExportOptions(ls_shape=shape, ls_from_name=from_name),
        str(folder),
        "maskseg-test",
    )
    paths = sorted(str(folder / n) for n in dets)
    for i, (p, stem) in enumerate(zip(paths, output_stems(paths, str(folder)))):
        writer.write(ImageItem(i, p, stem), read_bgr(p), dets[Path(p).name])
    return json.loads(Path(writer.close()["labelstudio"]).read_text())


def _regions(results: list[dict]) -> list[tuple]:
    return [
        (
            r["type"],
            r["from_name"],
            r["value"][r["type"]],
            r["value"].get("points"),
            r["value"].get("rle"),
            r["original_width"],
            r["original_height"],
        )
        for r in results
    ]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _check_export(
    export: list[dict], folder: Path, dets: dict[str, Detections], tmp_path: Path, exact: bool
) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    from pycocotools import mask as mask_util

    from maskseg_d2.data.geometry import rasterize_polygons

    loaded = load_dataset(path, folder, fmt="labelstudio", classes=CLASSES)
    assert sorted(Path(d["file_name"]).name for d in loaded) == sorted(dets)
    for d in loaded:
        ours = dets[Path(d["file_name"]).name]
        assert (d["height"], d["width"]) == ours.image_size
        assert [a["category_id"] for a in d["annotations"]] == ours.classes.tolist()
        for a, m in zip(d["annotations"], ours.masks):
            seg = a["segmentation"]
            got = (
                mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool)
                if isinstance(seg, dict)
                else rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], d["height"], d["width"])
            )
            assert np.array_equal(got, m) if exact else _iou(got, m) > 0.85, Path(d["file_name"]).name


def test_predictions_json_imports_into_label_studio_and_exports_back(labelstudio, photos, tmp_path):
    folder, dets = photos
    ls = labelstudio
    tasks = _write_predictions(folder, dets, tmp_path / "poly", "polygon", "label")
    assert all(t["data"]["image"].startswith("/data/local-files/?d=photos/") for t in tasks)
    project = ls.post("/api/projects", {"title": "maskseg polygons", "label_config": LABEL_CONFIG})["id"]
    ls.post(
        "/api/storages/localfiles",
        {"project": project, "path": str(folder), "title": "photos", "use_blob_urls": True},
    )
    imported = ls.post(f"/api/projects/{project}/import", tasks)
    assert imported["task_count"] == len(dets) and imported["prediction_count"] == len(dets)

    served = ls.tasks(project)
    by_image = {t["data"]["image"]: t for t in served}
    assert set(by_image) == {t["data"]["image"] for t in tasks}
    for ours in tasks:
        theirs = by_image[ours["data"]["image"]]["predictions"]
        assert len(theirs) == 1 and theirs[0]["model_version"] == "maskseg-test"
        assert theirs[0]["score"] == pytest.approx(ours["predictions"][0]["score"])
        assert _regions(theirs[0]["result"]) == _regions(ours["predictions"][0]["result"])
        image = ls.get(ours["data"]["image"], raw=True)  # Label Studio can open the image we point it at
        name = Path(ours["data"]["image"].split("?d=", 1)[1]).name.replace("%20", " ")
        assert image == (folder / name).read_bytes()

    done = ls.post(
        f"/api/dm/actions?id=predictions_to_annotations&project={project}",
        {"selectedItems": {"all": True, "excluded": []}},
    )
    assert str(len(dets)) in done["detail"]
    _check_export(ls.export(project), folder, dets, tmp_path, exact=False)


def test_brush_predictions_attach_to_uploaded_photos(labelstudio, photos, tmp_path):
    folder, dets = photos
    ls = labelstudio
    tasks = _write_predictions(folder, dets, tmp_path / "brush", "brush", "brush")
    ours = {normalize_name(Path(t["data"]["image"].split("?d=", 1)[1]).name): t for t in tasks}
    project = ls.post("/api/projects", {"title": "maskseg brushes", "label_config": LABEL_CONFIG})["id"]
    assert ls.upload(project, sorted(folder.iterdir()))["task_count"] == len(dets)
    for task in ls.tasks(project):
        uploaded = task["data"]["image"].rsplit("/", 1)[1]  # <8 hex>-<name>, spaces -> _
        assert task["data"]["image"].startswith(f"/data/upload/{project}/")
        match = [ours[normalize_name(n)] for n in upload_names(uploaded) if normalize_name(n) in ours]
        pred = match[0]["predictions"][0]
        ls.post("/api/predictions/", {"task": task["id"], **pred})
    for task in ls.tasks(project):
        assert len(task["predictions"]) == 1 and task["predictions"][0]["model_version"] == "maskseg-test"
        assert {r["type"] for r in task["predictions"][0]["result"]} == {"brushlabels"}
    ls.post(
        f"/api/dm/actions?id=predictions_to_annotations&project={project}",
        {"selectedItems": {"all": True, "excluded": []}},
    )
    _check_export(ls.export(project), folder, dets, tmp_path, exact=True)  # brush RLE is lossless
