"""The install helper of the integration fixtures skips only when the registry is unreachable (fast, localhost only).

pip fails the same way ("No matching distribution") offline and for a pin that does not exist; the helper must
tell them apart by asking the index: a closed port skips, an index that answers (here one that has nothing) fails
the test with pip's output.
"""
from __future__ import annotations

import functools
import http.server
import socket
import sys
import threading

import pytest
from helpers.registry import index_url, pip_install, unreachable

MISSING = "maskseg-no-such-package==1.0"
PIP_OPTS = ("--isolated", "--retries", "0", "--timeout", "5")  # --isolated: ignore this machine's pip config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connecting is refused


@pytest.fixture
def empty_index(tmp_path):
    """An HTTP index on localhost that answers and holds no package (every project page is a 404)."""
    (tmp_path / "simple").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_registry_skips_with_the_reason():
    url = f"http://127.0.0.1:{_closed_port()}/simple/"
    assert unreachable(url)
    with pytest.raises(pytest.skip.Exception, match=r"registry .*127\.0\.0\.1.* unreachable"):
        pip_install(sys.executable, *PIP_OPTS, "--index-url", url, MISSING, index=url)


def test_a_broken_pin_on_a_reachable_registry_fails_with_pip_output(empty_index):
    assert unreachable(empty_index) is None  # it answers (a 404 is an answer)
    with pytest.raises(pytest.fail.Exception) as failed:
        pip_install(sys.executable, *PIP_OPTS, "--index-url", empty_index, MISSING, index=empty_index)
    assert "although" in str(failed.value) and "No matching distribution found for " + MISSING in str(failed.value)


def test_index_url_is_the_one_pip_uses(monkeypatch, tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple/\n")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert index_url(sys.executable) == "https://mirror.example/simple/"
    monkeypatch.setenv("PIP_INDEX_URL", "https://other.example/simple/")  # the environment wins
    assert index_url(sys.executable) == "https://other.example/simple/"
