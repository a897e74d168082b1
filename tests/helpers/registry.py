"""``pip install`` for test-only venvs (Label Studio, label-studio-sdk) that skips ONLY when the package registry
cannot be reached.

Any other failure (a broken pin, a build error, a dependency conflict) fails the test with pip's output: a skip must
never hide a broken install. "Unreachable" is decided by asking the index pip uses (``PIP_INDEX_URL``, else the
``index-url`` of pip's config, else PyPI) directly, not by reading pip's messages: pip prints "No matching
distribution" both offline and for a pin that does not exist.
"""
from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PYPI = "https://pypi.org/simple/"
# pip's config scopes, the later ones win (pip loads global, user, site in that order); the environment wins over all
_SCOPES = ("global", "user", "site")


def index_url(python: str | Path) -> str:
    """The index ``python -m pip install`` downloads from.

    Args:
        python (str or Path): the interpreter whose pip installs.

    Returns:
        str: ``PIP_INDEX_URL``, else the last ``index-url`` of ``pip config list`` (site > user > global,
        ``install.`` beside ``global.``), else PyPI's simple index.
    """
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].split()[0]
    proc = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        scope, _, name = key.partition(".")
        if name == "index-url" and scope in (*_SCOPES, "install"):
            found[scope] = value.strip().strip("'\"").split()[0]
    for scope in ("site", "user", "install", "global"):
        if scope in found:
            return found[scope]
    return PYPI


def unreachable(url: str, timeout: float = 15.0) -> str | None:
    """Why ``url`` cannot be reached (DNS, refused, timeout), or None when a server answered.

    Any HTTP answer, a 404 included, means the registry is reachable: pip's failure was something else.
    """
    try:  # HEAD: PyPI's /simple/ page lists every project (tens of MB)
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as e:  # URLError wraps socket.gaierror, ConnectionRefusedError ...
        return str(getattr(e, "reason", e))


def pip_install(python: str | Path, *args: str, timeout: float = 1800, index: str | None = None) -> None:
    """``python -m pip install -q *args``; skips the test when the registry is unreachable, fails it otherwise.

    Args:
        python (str or Path): the interpreter of the venv to install into.
        *args (str): requirements and pip options.
        timeout (float): seconds pip may take.
        index (str or None): the index to probe when pip fails; None: :func:`index_url` of ``python``.

    Raises:
        pytest.skip.Exception: pip failed and the index does not answer (offline, DNS, firewall).
        pytest.fail.Exception: pip failed although the index answers, with pip's output.
    """
    cmd = [str(python), "-m", "pip", "install", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0:
        return
    url = index or index_url(python)
    output = (proc.stdout + proc.stderr).strip()
    why = unreachable(url)
    if why is not None:
        last = output.splitlines()[-1][:200] if output else "no output"
        pytest.skip(f"package registry {url} unreachable ({why}); pip install {' '.join(args)}: {last}")
    pytest.fail(f"pip install {' '.join(args)} failed (exit {proc.returncode}) although {url} answers:\n"
                f"{output[-4000:]}", pytrace=False)
