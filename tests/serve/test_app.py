"""The ML-backend protocol of ``maskseg_d2.serve`` through Flask's test client, with a fixed fake model.

The model is replaced by a predictor returning known masks (one one-part square, one two-part mask), so what
the protocol carries can be checked exactly: the regions Label Studio would store are read back by our own
importer (as an export of the accepted predictions gives them) and must be the masks the model returned.
"""
from __future__ import annotations

import base64
import json
import threading

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.predict import Detections
from maskseg_d2.serve import Backend, ImageFetcher, create_app

H, W = 48, 64
CLASSES = ["car", "sign board", "tree"]
CONFIG = """<View>
  <Image name="photo" value="$img"/>
  <PolygonLabels name="outline" toName="photo"><Label value="Car"/><Label value="sign board"/></PolygonLabels>
  <BrushLabels name="paint" toName="photo"><Label value="Car"/><Label value="sign board"/></BrushLabels>
</View>"""


def _masks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    square = np.zeros((H, W), bool)
    square[5:20, 8:30] = True
    two = np.zeros((H, W), bool)
    two[25:40, 5:15] = True
    two[25:40, 40:60] = True
    tree = np.zeros((H, W), bool)
    tree[2:6, 50:60] = True
    return square, two, tree


class FakeModel:
    """Every image: a car (one part), a sign board (two parts), a tree (no label in the project)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls.append(len(images))
        masks = np.stack(_masks())
        out = []
        for im in images:
            assert im.shape == (H, W, 3) and im.dtype == np.uint8
            out.append(Detections(np.zeros((3, 4), np.float32), np.array([0.9, 0.6, 0.8], np.float32),
                                  np.array([0, 1, 2]), masks.copy()))
        return out


@pytest.fixture
def images(tmp_path):
    for name in ("a.png", "b b.png", "c.jpg"):
        Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(tmp_path / name)
    return tmp_path


def _backend(root, model=None, load=None, **kw) -> Backend:
    model = model or FakeModel()
    backend = Backend(load or (lambda: model), CLASSES, "run-7", ImageFetcher(image_root=str(root)), **kw)
    backend.start().join()
    return backend


def _tasks(*names: str) -> list[dict]:
    return [{"id": i + 1, "data": {"img": f"/data/local-files/?d={n.replace(' ', '%20')}"}}
            for i, n in enumerate(names)]


def _predict(client, tasks, config=CONFIG):
    return client.post("/predict", json={"tasks": tasks, "project": "3.1700000000", "label_config": config,
                                         "params": {"login": None, "password": None, "context": None}})


def _read_back(result: list[dict], root, tmp_path) -> list[tuple[int, np.ndarray]]:
    """The regions as our importer reads an export of the accepted prediction: (class, mask) each."""
    export = tmp_path / "export.json"
    export.write_text(json.dumps([{"id": 1, "data": {"image": "/data/local-files/?d=a.png"},
                                   "annotations": [{"id": 1, "result": result}]}]))
    (record,) = load_dataset(export, root, fmt="labelstudio", classes=["Car", "sign board"])
    out = []
    for a in record["annotations"]:
        seg = a["segmentation"]
        mask = (mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool) if isinstance(seg, dict)
                else rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], H, W))
        out.append((a["category_id"], mask))
    return out


def test_predict_answers_each_task_under_the_projects_own_tag_names(images, tmp_path):
    model = FakeModel()
    client = create_app(_backend(images, model)).test_client()
    response = _predict(client, _tasks("a.png", "b b.png", "c.jpg"))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["model_version"] == "run-7" and len(body["results"]) == 3
    assert model.calls == [3]  # the request's images in one call of the model
    square, two, _ = _masks()
    for prediction in body["results"]:
        assert set(prediction) == {"result", "score", "model_version"} and prediction["model_version"] == "run-7"
        regions = prediction["result"]
        assert [(r["type"], r["from_name"], r["to_name"]) for r in regions] == [
            ("polygonlabels", "outline", "photo"), ("brushlabels", "paint", "photo")]  # the tree has no label
        assert regions[0]["value"]["polygonlabels"] == ["Car"] and regions[1]["value"]["brushlabels"] == ["sign board"]
        assert all((r["original_width"], r["original_height"]) == (W, H) for r in regions)
        assert prediction["score"] == pytest.approx(np.mean([0.9, 0.6]), abs=1e-5)
        (c1, m1), (c2, m2) = _read_back(regions, images, tmp_path)
        assert (c1, c2) == (0, 1)
        assert np.array_equal(m1, square) and np.array_equal(m2, two)  # a rectangle's polygon and RLE are exact


def test_a_project_with_polygons_only_gets_polygons(images):
    config = CONFIG.split("  <BrushLabels")[0] + "</View>"
    client = create_app(_backend(images)).test_client()
    (prediction,) = _predict(client, _tasks("a.png"), config).json["results"]
    assert [r["type"] for r in prediction["result"]] == ["polygonlabels", "polygonlabels"]
    assert {r["from_name"] for r in prediction["result"]} == {"outline"}


def test_health_and_setup_answer_as_the_protocol_says(images):
    client = create_app(_backend(images)).test_client()
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json["status"] == "UP" and health.json["model_class"]
    setup = client.post("/setup", json={"project": "3.1700000000", "schema": CONFIG, "hostname":
                                        "http://localhost:8080", "access_token": "x", "extra_params": None})
    assert setup.status_code == 200 and setup.json == {"model_version": "run-7"}
    bad = client.post("/setup", json={"project": "3.1", "schema": "<View><Image name='i' value='$i'/></View>"})
    assert bad.status_code == 422 and "PolygonLabels" in bad.json["error"]
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {}}).status_code == 201


def test_while_loading_every_call_but_health_is_503(images):
    release = threading.Event()
    backend = Backend(lambda: release.wait(10) and FakeModel(), CLASSES, "run-7",
                      ImageFetcher(image_root=str(images)))
    loader = backend.start()
    client = create_app(backend).test_client()
    try:
        assert client.get("/health").status_code == 503 and client.get("/health").json["status"] == "LOADING"
        response = _predict(client, _tasks("a.png"))
        assert response.status_code == 503 and "loading" in response.json["error"]
        assert client.post("/setup", json={"schema": CONFIG}).status_code == 503
    finally:
        release.set()
        loader.join()
    assert _predict(client, _tasks("a.png")).status_code == 200


def test_a_model_that_fails_to_load_says_why(images):
    def broken():
        raise RuntimeError("checkpoint truncated")

    client = create_app(_backend(images, load=broken)).test_client()
    health = client.get("/health")
    assert health.status_code == 503 and health.json["status"] == "FAILED"
    assert "checkpoint truncated" in health.json["error"]
    assert "checkpoint truncated" in _predict(client, _tasks("a.png")).json["error"]


@pytest.mark.parametrize("body, status, words", [
    (b"not json", 400, "JSON object"),
    ({"label_config": CONFIG}, 400, "lacks tasks"),
    ({"tasks": "a.png", "label_config": CONFIG}, 400, "list of task objects"),
    ({"tasks": [{"id": 1, "data": {}}], "label_config": CONFIG}, 422, "no 'img'"),
    ({"tasks": _tasks("missing.png"), "label_config": CONFIG}, 422, "missing.png"),
    ({"tasks": _tasks("a.png") * 3, "label_config": CONFIG}, 413, "3 tasks in one request; this server takes 2"),
    ({"tasks": _tasks("a.png"), "label_config": "<View"}, 422, "not valid XML"),
])
def test_bad_requests_get_a_json_error(images, body, status, words):
    client = create_app(_backend(images), max_tasks=2).test_client()
    response = (client.post("/predict", data=body, content_type="text/plain") if isinstance(body, bytes)
                else client.post("/predict", json=body))
    assert response.status_code == status and words in response.json["error"], response.json


def test_a_body_over_the_limit_is_413(images):
    client = create_app(_backend(images), max_request_bytes=1000).test_client()
    response = _predict(client, _tasks("a.png") + [{"id": 9, "data": {"img": "x" * 2000}}])
    assert response.status_code == 413 and response.json["error"]


def test_a_task_whose_image_is_gone_is_named_and_the_others_are_answered(images):
    model = FakeModel()
    client = create_app(_backend(images, model)).test_client()
    response = _predict(client, _tasks("a.png", "gone.png", "c.jpg"))
    assert response.status_code == 200 and model.calls == [2]
    first, gone, last = response.json["results"]
    assert "result" not in gone and "gone.png" in gone["error"]  # Label Studio skips an entry without result
    assert len(first["result"]) == len(last["result"]) == 2


def test_a_path_outside_image_root_is_refused(images):
    client = create_app(_backend(images)).test_client()
    response = _predict(client, [{"id": 1, "data": {"img": "/data/local-files/?d=../etc/passwd"}}])
    assert response.status_code == 422 and "outside image_root" in response.json["error"]


def test_a_local_files_uri_without_its_path_is_named(images):
    client = create_app(_backend(images)).test_client()
    response = _predict(client, [{"id": 1, "data": {"img": "/data/local-files/"}}])
    assert response.status_code == 422
    assert response.json["error"] == ("image: local-files URI without ?d=: /data/local-files/ — re-export the tasks "
                                      "from Label Studio")


def test_a_personal_token_is_exchanged_again_before_its_access_token_expires(monkeypatch):
    from maskseg_d2.serve import backend as serve_backend

    made = []
    monkeypatch.setattr(serve_backend, "LabelStudioClient", lambda url, token, keys: made.append((url, token)) or url)
    clock = [1000.0]
    monkeypatch.setattr(serve_backend.time, "monotonic", lambda: clock[0])
    for token, expected in (("eyJhbGciOiJIUzI1NiJ9.e30.sig", 2), ("0123abcd" * 5, 1)):
        made.clear()
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
        fetcher = ImageFetcher(url="http://ls:8080")
        fetcher._client("http://ls:8080")
        clock[0] += serve_backend.ACCESS_RENEW_S - 1
        fetcher._client("http://ls:8080")  # still fresh: the same client
        clock[0] += 2
        fetcher._client("http://ls:8080")  # a JWT's access token is near its 5 minutes: a new exchange
        assert len(made) == expected, token


@pytest.fixture
def png_server():
    """Two local HTTP servers ("Label Studio" and "another host") serving one PNG; they record Authorization."""
    import http.server
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(buf, format="PNG")
    seen: list[tuple[int, str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 — the http.server name
            seen.append((self.server.server_port, self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(buf.getvalue())

        def log_message(self, *args):
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield [f"http://127.0.0.1:{s.server_port}" for s in servers], seen
    for s in servers:
        s.shutdown()
        s.server_close()


def test_the_token_goes_to_label_studio_only(png_server, monkeypatch, tmp_path):
    (studio, other), seen = png_server
    token = "5e1f0c0ffee0ddba11c0de5eed00000000001234"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    backend = Backend(FakeModel, CLASSES, "run-7", ImageFetcher(), workers=0)
    backend.start().join()
    client = create_app(backend).test_client()
    client.post("/setup", json={"schema": CONFIG, "hostname": studio})  # url= unset: /setup's hostname is used
    tasks = [{"id": 1, "data": {"img": "/data/upload/3/0a1b2c3d-a.png"}}, {"id": 2, "data": {"img": f"{other}/b.png"}}]
    response = _predict(client, tasks)
    assert response.status_code == 200 and all(len(p["result"]) == 2 for p in response.json["results"])
    ports = {url: int(url.rsplit(":", 1)[1]) for url in (studio, other)}
    assert seen == [(ports[studio], "/data/upload/3/0a1b2c3d-a.png", f"Token {token}"), (ports[other], "/b.png", None)]


@pytest.mark.parametrize("uri,error", [
    ("/data/upload/3/0a1b2c3d-a.png", "a Label Studio path, and no server is known — pass url="),
    ("/data/local-files/?d=a.png", "a Label Studio path, and no server is known — pass url="),
    ("s3://bucket/data/upload/3/0a1b2c3d-a.png", "neither a Label Studio path, an http(s) URL nor a file under "),
    ("photos/a.png", "neither a Label Studio path, an http(s) URL nor a file under "),
])
def test_the_fetcher_reads_the_uri_as_parse_uri_does(uri, error):
    """A Label Studio path needs a server; a bucket's object (even under data/upload/) is not Label Studio's."""
    from maskseg_d2.errors import UserError

    with pytest.raises(UserError) as e:
        ImageFetcher().fetch(uri, hostname=None)
    assert str(e.value).startswith(f"image {uri}: {error}")


def test_a_wrong_url_or_token_file_is_one_line_at_start(tmp_path):
    from maskseg_d2.errors import UserError

    with pytest.raises(UserError, match=r"^url=ftp://ls: not an http\(s\) URL — e\.g\. url=http://localhost:8080$"):
        ImageFetcher(url="ftp://ls")
    with pytest.raises(UserError, match=r"^token_file=\S+: cannot read it .* unset token_file and set LABEL_STUDIO"):
        ImageFetcher(token_file=str(tmp_path / "none"))


def test_with_basic_auth_only_label_studio_gets_in(images):
    client = create_app(_backend(images), basic_auth=("ls", "s3cret-pass")).test_client()
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret-pass").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:guess").decode()}
    for headers in ({}, bad):
        response = client.get("/health", headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
        assert _predict(client, _tasks("a.png")).status_code == 401
    assert client.get("/health", headers=good).status_code == 200
    assert client.post("/predict", headers=good, json={"tasks": _tasks("a.png"), "label_config": CONFIG}).json[
        "results"][0]["result"]
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 201  # webhooks: no auth
