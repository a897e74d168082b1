"""A real Label Studio server for round-trip tests, in its own venv (its pins clash with ours).

``.venv-labelstudio/`` (git-ignored) is created once under the repository with ``python -m venv`` and
``pip install label-studio==LS_VERSION``; later sessions reuse it. Only an unreachable package registry skips
the tests; a failed install or start fails them with pip's or the server's output. The server runs on
127.0.0.1 with a free port and a temporary data dir, with update checks, analytics and Sentry off (localhost
traffic only), and is stopped in a ``finally``. Its first start migrates an empty database (about a minute on
2 cores); the migrated database is kept in the venv as a template so later starts take seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers.registry import pip_install

ROOT = Path(__file__).resolve().parents[2]
LS_VERSION = "1.23.2"  # `pip index versions label-studio` (2026-11): latest
VENV = ROOT / ".venv-labelstudio"
READY = VENV / f".maskseg-label-studio-{LS_VERSION}"  # written after a complete install
TEMPLATE_DB = VENV / f"maskseg-template-{LS_VERSION}.sqlite3"  # migrated database with the test user
START_TIMEOUT_S = 120
USER, PASSWORD = "maskseg@example.com", "maskseg-test-password"
TOKEN = "5e1f0c0ffee0ddba11c0de5eed0000000000cafe"  # legacy API token of the throw-away local user


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


@pytest.fixture(scope="session")
def labelstudio_venv() -> Path:
    """The ``label-studio`` executable, installing it on first use.

    Skips only when the package registry is unreachable; any other failure (venv, pip, a broken pin) fails the
    test with the output (``helpers.registry.pip_install``).
    """
    if READY.is_file() and _bin("label-studio").is_file():
        return _bin("label-studio")
    if VENV.exists():
        shutil.rmtree(VENV)  # a half-finished install from an interrupted session
    venv = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True, timeout=300)
    if venv.returncode != 0:
        pytest.fail(f"python -m venv {VENV} failed:\n{venv.stdout}{venv.stderr}", pytrace=False)
    try:
        pip_install(_bin("python"), f"label-studio=={LS_VERSION}", timeout=600)  # 2.3 min measured
    except BaseException:  # skipped or failed: no half-installed venv is reused by the next session
        shutil.rmtree(VENV, ignore_errors=True)
        raise
    READY.write_text(f"label-studio=={LS_VERSION}\n")
    return _bin("label-studio")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio:
    """A minimal client of a running server's REST API (legacy token auth, stdlib only).

    Args:
        url (str): ``http://127.0.0.1:<port>``.
        token (str): the user's API token.
        files_root (Path): ``LOCAL_FILES_DOCUMENT_ROOT`` of the server.
    """

    def __init__(self, url: str, token: str, files_root: Path) -> None:
        self.url, self.token, self.files_root = url, token, files_root

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None and content_type == "application/json" else body
        headers = {"Authorization": f"Token {self.token}"}
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: HTTP {e.code} {e.read()[:500]!r}") from None
        if raw:
            return payload
        return json.loads(payload) if payload else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def upload(self, project: int, files: list[Path]) -> Any:
        """Upload image files into a project (one task each), like drag and drop in the UI."""
        boundary = uuid.uuid4().hex
        body = b""
        for f in files:
            body += (
                (
                    f"--{boundary}\r\n"
                    f'Content-Disposition: form-data; name="{f.name}"; filename="{f.name}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n"
                ).encode()
                + f.read_bytes()
                + b"\r\n"
            )
        body += f"--{boundary}--\r\n".encode()
        return self.request(
            "POST", f"/api/projects/{project}/import", body, f"multipart/form-data; boundary={boundary}"
        )

    def tasks(self, project: int) -> list[dict]:
        return self.get(f"/api/tasks?project={project}&fields=all&page_size=1000")["tasks"]

    def export(self, project: int) -> list[dict]:
        """The project's "JSON" export, as Export -> JSON in the UI downloads it."""
        return self.get(f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1.0)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    state = (
        f"exited with code {proc.returncode}"
        if proc.poll() is not None
        else f"not healthy after {timeout:.0f} s"
    )
    pytest.fail(f"Label Studio {state}; server log tail:\n{tail}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started (own process group)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def labelstudio(labelstudio_venv, tmp_path_factory) -> LabelStudio:
    """A running Label Studio (local-files serving on a temporary document root) and its API client."""
    if os.name == "nt":
        pytest.skip("the Label Studio round trip runs on Linux/macOS (process-group shutdown)")
    data = tmp_path_factory.mktemp("labelstudio_data")
    files_root = tmp_path_factory.mktemp("labelstudio_files")
    db = data / "label_studio.sqlite3"
    if TEMPLATE_DB.is_file():
        shutil.copy(TEMPLATE_DB, db)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        # the ML-backend test connects tools/serve.py on 127.0.0.1 (and Label Studio adds a webhook to it)
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = data / "server.log"
    cmd = [
        str(labelstudio_venv),
        "start",
        "--no-browser",
        "--data-dir",
        str(data),
        "--database",
        str(db),
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--username",
        USER,
        "--password",
        PASSWORD,
        "--user-token",
        TOKEN,
        "--enable-legacy-api-token",
    ]  # 1.23 disables legacy tokens by default
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=data,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, url, log, START_TIMEOUT_S)
        if not TEMPLATE_DB.is_file():  # a consistent copy of the freshly migrated database
            with sqlite3.connect(db) as src, sqlite3.connect(TEMPLATE_DB) as dst:
                src.backup(dst)
        yield LabelStudio(url, TOKEN, files_root)
    finally:
        _stop(proc)
