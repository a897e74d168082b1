"""A small client of Label Studio's REST API: authentication, retries, and one-line errors.

Label Studio 1.2x has two kinds of token, both read from ``LABEL_STUDIO_API_KEY`` (or a file), never from a
config: a personal access token (a JWT refresh token: exchanged at ``POST /api/token/refresh/`` for a short-lived
access token sent as ``Authorization: Bearer``) and a legacy token (sent as ``Authorization: Token``). Both the
token and the access token are registered as secrets (:mod:`maskseg_d2.utils.secrets`), so no log line or file
holds them; no error message is built from a server or library message that could echo them.

Every call has a timeout, and connection errors and 429/5xx answers are retried (urllib3 ``Retry``, exponential
back-off); TLS certificates are verified (``REQUESTS_CA_BUNDLE`` names a private CA). The token is sent to the
Label Studio server only: a task image on another host is fetched without it.
"""
from __future__ import annotations

import logging
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import UserError, fail
from ..utils.secrets import SECRET_KEY_NAME, register_secrets

__all__ = ["TOKEN_ENV", "ConfigKeys", "DATASET_KEYS", "LabelStudioClient", "read_token", "refuse_config_token",
           "is_personal_token"]

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
TIMEOUT_S = (10.0, 300.0)  # (connect, read): an export of a large project takes minutes to serialise
RETRIES = Retry(total=3, connect=2, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=frozenset({"GET", "POST"}), raise_on_status=False)
MAX_IMAGE_BYTES = 512 * 2**20  # a task image larger than this is not a photo: refuse it rather than fill the disk
TASK_PAGE = 1000  # tasks per page of GET /api/tasks/


@dataclass(frozen=True)
class ConfigKeys:
    """The config keys that errors name: training reads ``dataset.*``, the push of predictions ``labelstudio.*``.

    Attributes:
        url_key (str): the server's key.
        project_key (str): the project's key.
        token_file_key (str): the token file's key.
    """

    url_key: str = "dataset.url"
    project_key: str = "dataset.project"
    token_file_key: str = "dataset.token_file"


DATASET_KEYS = ConfigKeys()


def refuse_config_token(section: Mapping[str, Any], keys: ConfigKeys = DATASET_KEYS) -> None:
    """Refuse a token typed into a config (``dataset.token=...``): the config is saved with the run's files.

    Args:
        section (Mapping): the config section holding ``keys.token_file_key`` (``dataset``, ``labelstudio``, the
            top level of ``configs/serve.yaml``); a key named like a credential
            (:data:`~maskseg_d2.utils.secrets.SECRET_KEY_NAME`) with a value is an error.
        keys (ConfigKeys): the config keys the error names.
    """
    prefix = keys.token_file_key.rpartition(".")[0]
    for key in section:
        if SECRET_KEY_NAME.search(str(key)) and section.get(key):
            name = f"{prefix}.{key}" if prefix else str(key)
            raise UserError(f"{name}: a token never goes in a config (it would be saved with the run's files) — "
                            f"set LABEL_STUDIO_API_KEY, or {keys.token_file_key} to a file holding it")


def read_token(token_file: str | os.PathLike | None = None, keys: ConfigKeys = DATASET_KEYS,
               required: bool = True) -> str:
    """The API token: the contents of ``token_file`` when given, else ``$LABEL_STUDIO_API_KEY``.

    Args:
        token_file (str or PathLike or None): a file holding the token.
        keys (ConfigKeys): the config keys the errors name.
        required (bool): False: no token file and an empty ``$LABEL_STUDIO_API_KEY`` give ``""`` (the ML backend
            reads images that need none); an empty token file is still an error.

    Returns:
        str: the token, registered as a secret.
    """
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise fail(f"{keys.token_file_key}={token_file}", f"cannot read it ({e.strerror})",
                       f"fix the path, or unset {keys.token_file_key} and set LABEL_STUDIO_API_KEY") from None
        where = f"{keys.token_file_key}={token_file}"
    else:
        token, where = os.environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
        if not token and not required:
            return ""
    if not token:
        raise fail("Label Studio", f"no API token ({where} is empty or unset)",
                   "set LABEL_STUDIO_API_KEY to your Access Token (Label Studio: Account & Settings), "
                   f"or {keys.token_file_key} to a file holding it")
    register_secrets([token])
    return token


def is_personal_token(token: str) -> bool:
    """A personal access token is a JWT (three base64url parts); a legacy token is 40 hex digits."""
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ")


class LabelStudioClient:
    """Authenticated calls to one Label Studio server.

    Args:
        url (str): the server, e.g. ``http://localhost:8080`` (a path below it is kept: a proxy prefix).
        token (str): a personal access token or a legacy token (:func:`read_token`).
        keys (ConfigKeys): the config keys the errors name.
    """

    def __init__(self, url: str, token: str, keys: ConfigKeys = DATASET_KEYS) -> None:
        self.keys = keys
        parts = urllib.parse.urlsplit(str(url).strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise fail(f"{keys.url_key}={url}", "not an http(s) URL", f"e.g. {keys.url_key}=http://localhost:8080")
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=RETRIES))
        self.session.mount("https://", HTTPAdapter(max_retries=RETRIES))
        self.session.trust_env = True  # proxies and REQUESTS_CA_BUNDLE from the environment; verify stays on
        # urllib3 logs each retry as a WARNING with the low-level error: the one-line error after the last try says it
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        self._auth = self._authorization(token)

    # ---------------------------------------------------------------------------------------- requests

    def _request(self, method: str, url: str, what: str, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": self._auth} if auth else {}
        try:
            return self.session.request(method, url, headers=headers, timeout=TIMEOUT_S, verify=True, **kwargs)
        except requests.exceptions.SSLError:
            raise fail(what, f"the TLS certificate of {self.url} could not be verified",
                       "fix the server's certificate, or point REQUESTS_CA_BUNDLE at your CA file") from None
        except requests.exceptions.Timeout:
            raise fail(what, f"{self.url} did not answer within {TIMEOUT_S[1]:.0f} s",
                       "check that Label Studio is running and responsive") from None
        except requests.exceptions.ConnectionError as e:
            reason = "connection refused" if "refused" in str(e).lower() else "cannot connect"
            raise fail(what, f"cannot reach Label Studio at {self.url} ({reason})",
                       f"start Label Studio, or fix {self.keys.url_key}") from None
        except requests.exceptions.RequestException as e:
            raise fail(what, f"request to {self.url} failed ({type(e).__name__})", f"fix {self.keys.url_key}") from None

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code in (401, 403):
            raise fail(what, f"Label Studio at {self.url} refused the API token (HTTP {response.status_code})",
                       "set LABEL_STUDIO_API_KEY to your Access Token (Label Studio: Account & Settings), "
                       f"or {self.keys.token_file_key} to a file holding it")
        if response.status_code >= 400:
            raise fail(what, f"Label Studio at {self.url} answered HTTP {response.status_code}",
                       f"check {self.keys.url_key} and {self.keys.project_key}")
        return response

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self.not_label_studio(what, "did not answer with JSON") from None

    def not_label_studio(self, what: str, how: str) -> UserError:
        return fail(what, f"{self.url} {how}: is it a Label Studio server?",
                    f"set {self.keys.url_key} to the address you open Label Studio at, e.g. http://localhost:8080")

    def _authorization(self, token: str) -> str:
        if not is_personal_token(token):
            return f"Token {token}"
        what = "Label Studio personal access token"
        response = self._request("POST", self.url + "/api/token/refresh/", what, auth=False,
                                 json={"refresh": token})
        if response.status_code in (400, 401, 403):
            raise fail(what, f"{self.url} refused it (HTTP {response.status_code}: expired or revoked?)",
                       "set LABEL_STUDIO_API_KEY to your Access Token (Label Studio: Account & Settings), "
                       f"or {self.keys.token_file_key} to a file holding it")
        access = self._json(self._check(response, what), what).get("access")
        if not isinstance(access, str) or not access:
            raise fail(what, f"{self.url} returned no access token",
                       f"check {self.keys.url_key} (Label Studio >= 1.15)")
        register_secrets([access])
        return f"Bearer {access}"

    def projects(self, what: str) -> list[dict]:
        """The projects this token can see (``GET /api/projects/``); also checks the URL and the token."""
        response = self._request("GET", self.url + "/api/projects/", what, params={"page_size": 10000})
        if response.status_code in (404, 405):
            raise self.not_label_studio(what, f"answered HTTP {response.status_code} for /api/projects/")
        listing = self._json(self._check(response, what), what)
        projects = listing.get("results") if isinstance(listing, dict) else listing
        if not isinstance(projects, list):
            raise self.not_label_studio(what, "answered /api/projects/ with something else than projects")
        return [p for p in projects if isinstance(p, dict)]

    def get_json(self, path: str, what: str, params: dict | None = None, missing_ok: bool = False) -> Any:
        """``GET <url><path>`` as JSON; HTTP errors become one-line :class:`UserError`s naming ``what``.

        ``missing_ok``: a 404 answers None instead of raising (the caller says what is missing).
        """
        response = self._request("GET", self.url + path, what, params=params)
        if missing_ok and response.status_code == 404:
            return None
        return self._json(self._check(response, what), what)

    def post_json(self, path: str, body: Any, what: str) -> Any:
        """``POST <url><path>`` with a JSON body; a 400 names Label Studio's reason (a validation message)."""
        response = self._request("POST", self.url + path, what, json=body)
        if response.status_code == 400:
            try:
                detail = response.json()
                detail = detail.get("validation_errors") or detail.get("detail") or detail \
                    if isinstance(detail, dict) else detail
            except ValueError:
                detail = response.text
            raise fail(what, f"Label Studio at {self.url} refused it (HTTP 400: {str(detail)[:300]})",
                       "check that the labeling config's tags and labels match the run's classes")
        return self._json(self._check(response, what), what)

    def delete(self, path: str, what: str) -> None:
        """``DELETE <url><path>``; already gone (404) is fine."""
        response = self._request("DELETE", self.url + path, what)
        if response.status_code != 404:
            self._check(response, what)

    def tasks(self, project: int, what: str) -> list[dict]:
        """Every task of a project, ``id`` and ``data`` (``GET /api/tasks/?project=``, page by page)."""
        tasks: list[dict] = []
        while True:
            page = self.get_json("/api/tasks/", what, params={"project": project, "page": len(tasks) // TASK_PAGE + 1,
                                                             "page_size": TASK_PAGE, "fields": "task_only"})
            got = page.get("tasks") if isinstance(page, dict) else None
            if not isinstance(got, list):
                raise self.not_label_studio(what, "answered /api/tasks/ with something else than tasks")
            tasks += [t for t in got if isinstance(t, dict)]
            if len(got) < TASK_PAGE or len(tasks) >= int(page.get("total") or 0):
                return tasks

    def predictions(self, project: int, what: str) -> list[dict]:
        """Every prediction of a project (``GET /api/predictions/?project=``: one unpaginated list in 1.2x)."""
        listing = self.get_json("/api/predictions/", what, params={"project": project})
        listing = listing.get("results") if isinstance(listing, dict) else listing
        if not isinstance(listing, list):
            raise self.not_label_studio(what, "answered /api/predictions/ with something else than predictions")
        return [p for p in listing if isinstance(p, dict)]

    # ----------------------------------------------------------------------------------------- files

    def is_own(self, url: str) -> bool:
        """True when ``url`` is on this server (the token may be sent with it)."""
        a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    def download(self, uri: str, out: IO[bytes], what: str) -> int:
        """Stream a task image into ``out``: a server path (``/data/...``) or an http(s) URL.

        Returns:
            int: the HTTP status: 200, written; another, nothing written: the image is gone (Label Studio 1.23
            answers 500 for an upload deleted from its disk, after the retries); 401/403 raise.
        """
        url = self.url + uri if uri.startswith("/") else uri
        response = self._request("GET", url, what, auth=self.is_own(url), stream=True)
        with response:
            if response.status_code != 200:
                return self._check(response, what).status_code if response.status_code in (401, 403) \
                    else response.status_code
            size = 0
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise UserError(f"{what}: larger than {MAX_IMAGE_BYTES >> 20} MiB — not a photo; "
                                    "remove the task or shrink the image")
                out.write(chunk)
        return response.status_code
