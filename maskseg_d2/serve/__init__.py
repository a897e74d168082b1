"""A run's model as a Label Studio ML backend: ``python tools/serve.py run=<run dir>`` (:func:`serve`).

Connected from a project's Settings -> Model (or ``POST /api/ml`` with ``url`` and ``project``), it answers Label
Studio's prediction requests ("Retrieve predictions", auto-annotation when a task opens) with polygons or brush
masks under the project's own tag names. Flask, because it is the framework of Label Studio's own reference
backend (label-studio-ml, whose last release pins Flask 1.1 and Werkzeug 2.0 and so cannot sit beside our pins);
:mod:`.app` cites the protocol's request and response shapes.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from werkzeug.serving import make_server

from ..data.labelstudio_client import refuse_config_token
from ..data.labelstudio_config import Targets, parse_label_config
from ..engine.run import Run
from ..errors import UserError, fail
from ..utils.secrets import register_secrets
from .app import MODEL_CLASS, create_app
from .backend import SERVE_KEYS, Backend, ImageFetcher, batch_predictor

__all__ = ["serve", "create_app", "Backend", "ImageFetcher", "batch_predictor", "parse_label_config", "Targets",
           "MODEL_CLASS"]

logger = logging.getLogger(__name__)
PASSWORD_ENV = "MASKSEG_SERVE_PASSWORD"  # never in a config: a secret (redacted from logs by its name)


def build_backend(cfg: Any) -> Backend:
    """The backend of ``configs/serve.yaml``'s options: the run opened now (its errors are one line), its model
    loaded by :meth:`Backend.start`."""
    if not cfg.run:
        raise UserError("run= is required — python tools/serve.py run=outputs/<task>/runs/<run dir>")
    if int(cfg.batch_size) < 1 or int(cfg.max_tasks) < 1 or float(cfg.max_request_mb) <= 0:
        raise UserError(f"batch_size={cfg.batch_size}, max_tasks={cfg.max_tasks}, max_request_mb="
                        f"{cfg.max_request_mb}: each must be positive")
    refuse_config_token(cfg, SERVE_KEYS)
    run = Run.open(str(cfg.run), cfg.checkpoint, str(cfg.device), score_threshold=cfg.score_threshold,
                   max_detections=cfg.max_detections)
    fetcher = ImageFetcher(cfg.url, cfg.image_root, cfg.token_file)
    amp, batch = bool(cfg.amp), int(cfg.batch_size)
    return Backend(lambda: batch_predictor(run.d2cfg, amp, batch), run.thing_classes,
                   str(cfg.model_version or run.name), fetcher, str(cfg.shape), float(cfg.polygon_tolerance),
                   int(cfg.workers))


def _basic_auth(cfg: Any) -> tuple[str, str] | None:
    """(user, password) when ``basic_auth_user`` is set; the password from the environment only (a secret)."""
    if not cfg.basic_auth_user:
        return None
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise fail(f"basic_auth_user={cfg.basic_auth_user}", f"{PASSWORD_ENV} is empty or unset",
                   f"export {PASSWORD_ENV}=<password>, the one you give Label Studio's Connect Model")
    register_secrets([password])
    return str(cfg.basic_auth_user), password


def serve(cfg: Any) -> None:
    """Serve until interrupted (Ctrl-C): the app on ``cfg.host:cfg.port``, the model loading meanwhile.

    Werkzeug's threaded server: ``/health`` answers while a prediction runs (Label Studio gives it 1 s), and
    requests take turns on the model. Behind a shared deployment, run :func:`create_app` under gunicorn instead.
    """
    auth = _basic_auth(cfg)
    backend = build_backend(cfg)
    app = create_app(backend, int(cfg.max_tasks), int(float(cfg.max_request_mb) * 2**20), auth)
    try:
        server = make_server(str(cfg.host), int(cfg.port), app, threaded=True)
    except OSError as e:
        raise fail(f"port={cfg.port}", f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror})",
                   "pass another port=, or stop what uses it") from None
    backend.start()
    logger.info("ML backend for %s on http://%s:%d — Label Studio: Settings -> Model -> Connect Model, URL "
                "http://<this machine>:%d", backend.model_version, cfg.host, server.port, server.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("ML backend stopped")
    finally:
        server.server_close()
