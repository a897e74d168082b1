"""Label Studio's ML-backend protocol over HTTP (Flask): ``/health``, ``/setup``, ``/predict``, ``/webhook``.

The shapes are those Label Studio 1.23 sends and reads (``label_studio/ml/api_connector.py`` and ``ml/models.py``
of the server; the reference backend is ``label_studio_ml/api.py`` of HumanSignal/label-studio-ml-backend):

* ``GET /health`` -> ``{"status": "UP", "model_class": ...}``; Label Studio calls it (1 s timeout) before each
  ``/setup`` and treats any error answer as "disconnected". Here: 503 ``{"status": "LOADING"}`` until the model is
  loaded, 503 ``{"status": "FAILED", "error"}`` when loading failed.
* ``POST /setup`` ``{"project": "<id>.<created_at>", "schema": <label config>, "hostname", "access_token",
  "extra_params"}`` -> ``{"model_version"}`` (3 s timeout: answered without touching the model). The access token
  is not used (nor kept): images are read with ``LABEL_STUDIO_API_KEY``, the token this side chose; the
  hostname is where ``/data/...`` images are when ``url=`` is not set (``/predict`` does not send it).
* ``POST /predict`` ``{"tasks": [task, ...], "project", "label_config", "params": {"login", "password",
  "context"}}`` -> ``{"results": [{"result": [regions], "score", "model_version"}, ...], "model_version"}``,
  one entry per task in order (Label Studio matches them by position; 100 s timeout). A task whose image
  cannot be read gets ``{"error", "model_version"}``: Label Studio skips an entry without ``result``.
* ``POST /webhook`` ``{"action": "START_TRAINING", ...}`` (the "Start Training" button): acknowledged with 201;
  this backend does not train (``tools/train.py dataset.source=labelstudio_api`` does).

Errors are JSON ``{"error": "<one line>"}``: 400 a body that is not the protocol's, 413 too many tasks or bytes,
422 a label config or image we cannot use, 503 while the model loads, 500 anything else (logged).
"""
from __future__ import annotations

import hmac
import logging
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ..data.labelstudio_config import parse_label_config
from ..errors import UserError
from ..utils.secrets import redact
from .backend import FAILED, READY, Backend

__all__ = ["create_app", "MODEL_CLASS"]

logger = logging.getLogger(__name__)
MODEL_CLASS = "maskseg_d2.MaskRCNN"


def _error(status: int, message: str):
    return jsonify({"error": redact(message)}), status


def _body(*required: str) -> dict:
    """The request's JSON object, with ``required`` keys present (else a 400 JSON error)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise _Reject(400, "the body must be a JSON object (Content-Type: application/json)")
    missing = [k for k in required if k not in body]
    if missing:
        raise _Reject(400, f"the body lacks {', '.join(missing)}")
    return body


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(backend: Backend, max_tasks: int = 100, max_request_bytes: int = 8 << 20,
               basic_auth: tuple[str, str] | None = None) -> Flask:
    """The WSGI app of one backend.

    Args:
        backend (Backend): the model (loading or loaded).
        max_tasks (int): tasks per ``/predict`` at most (413 beyond: Label Studio sends every selected task in one
            request, and waits 100 s for it).
        max_request_bytes (int): request body size at most (413 beyond).
        basic_auth (tuple[str, str] | None): (user, password) every call but ``/webhook`` must carry (401
            otherwise): Label Studio's "Basic Authentication" of Connect Model; None: no authentication.

    Returns:
        Flask: the app (``app.test_client()`` in tests; served by :func:`maskseg_d2.serve.serve`).
    """
    app = Flask("maskseg_d2.serve")
    app.config["MAX_CONTENT_LENGTH"] = int(max_request_bytes)

    def ready() -> None:
        if backend.state != READY:
            raise _Reject(503, backend.error if backend.state == FAILED else "the model is loading: retry shortly")

    @app.before_request
    def _authenticate():
        if basic_auth is None or request.path == "/webhook":  # Label Studio's webhooks carry no credentials
            return None
        given = request.authorization
        if (given is not None and given.type == "basic"
                and hmac.compare_digest(f"{given.username}:{given.password}", "{}:{}".format(*basic_auth))):
            return None
        response, status = _error(401, "Basic authentication required: set it in Label Studio's Connect Model")
        response.headers["WWW-Authenticate"] = 'Basic realm="maskseg ML backend"'
        return response, status

    @app.errorhandler(_Reject)
    def _reject(e: _Reject):
        return _error(e.status, str(e))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        return _error(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def _internal(e: Exception):
        logger.exception("ML backend: %s %s failed", request.method, request.path)
        return _error(500, f"{type(e).__name__} in the ML backend; its log has the details")

    @app.get("/")
    @app.get("/health")
    def health():
        status = {"status": "UP" if backend.state == READY else backend.state, "model_class": MODEL_CLASS,
                  "model_version": backend.model_version}
        if backend.state == FAILED:
            status["error"] = redact(backend.error)
        return jsonify(status), 200 if backend.state == READY else 503

    @app.post("/setup")
    def setup():
        body = _body("schema")
        ready()
        try:
            parse_label_config(str(body["schema"]))  # a project we cannot serve is told so when it connects
        except UserError as e:
            raise _Reject(422, str(e)) from None
        if isinstance(body.get("hostname"), str) and body["hostname"]:
            backend.hostname = body["hostname"]  # where /data/... images are when url= is not set
        return jsonify({"model_version": backend.model_version})

    @app.post("/predict")
    def predict():
        body = _body("tasks", "label_config")
        tasks, config = body["tasks"], body["label_config"]
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise _Reject(400, "tasks must be a list of task objects")
        if not isinstance(config, str):
            raise _Reject(400, "label_config must be the labeling config (XML text)")
        if len(tasks) > max_tasks:
            raise _Reject(413, f"{len(tasks)} tasks in one request; this server takes {max_tasks} — select fewer "
                               "tasks, or restart tools/serve.py with a larger max_tasks")
        ready()
        try:
            results = backend.predict(tasks, config) if tasks else []
        except UserError as e:
            raise _Reject(422, str(e)) from None
        return jsonify({"results": results, "model_version": backend.model_version})

    @app.post("/webhook")
    def webhook():
        action = _body("action")["action"]
        return jsonify({"status": "acknowledged", "action": action, "training": False}), 201

    return app
