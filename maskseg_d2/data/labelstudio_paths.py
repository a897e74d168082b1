"""Label Studio image references -> files under the image root (used by the JSON, JSON_MIN and COCO exports).

A task names its image by URI: ``/data/upload/<project>/<8 hex>-<name>`` (uploaded; Label Studio
prefixes the name), ``/storage-data/uploaded/?filepath=upload/...`` (newer versions),
``/data/local-files/?d=<relative path>``, a cloud/http URL, or a plain relative path. None of them is a
local path, so :func:`resolve_image` finds the file in an :class:`~maskseg_d2.data.images.ImageIndex`
of the user's photo folder: by relative path, by file name, then by the name Label Studio's upload
made of it; a path never leaves the folder, and a name matching several files is an error.
"""
from __future__ import annotations

import difflib
import os
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from ..errors import UserError, fail
from .images import ImageIndex, is_utf8, normalize_name

__all__ = ["CLOUD_SCHEMES", "ImageURI", "local_path", "parse_uri", "resolve_image", "resolve_name",
           "resolve_relative", "upload_names", "uri_names"]

_UPLOAD_PREFIX = re.compile(r"^[0-9a-fA-F]{8}-(.+)$")
_WEB_SCHEMES = ("http", "https")
CLOUD_SCHEMES = ("s3", "gs", "gcs", "azure-blob")


@dataclass(frozen=True)
class ImageURI:
    """What a task's image URI points at: the one reading of Label Studio's image references.

    Attributes:
        kind (str): ``local`` (``/data/local-files/?d=<path>``: local storage), ``upload`` (``/data/upload/...``
            or ``/storage-data/uploaded/?filepath=upload/...``), ``url`` (http/https), ``cloud`` (s3, gs, gcs,
            azure-blob), ``data`` (an embedded ``data:`` URI), ``server`` (another path on the Label Studio
            server), ``other`` (another scheme) or ``relative`` (a plain path).
        path (str): URL-decoded: the ``?d=`` path (``local``; ``""`` when it has none), the path below
            ``/data/`` (``upload``: ``upload/<project>/<8 hex>-<name>``), the URL's path (``url``, ``cloud``),
            else the URI itself.
        host (str): the URL's host (``url``, and ``local``/``upload`` named with their server: with its port;
            ``cloud``: the bucket), else ``""`` (a path on the Label Studio server, or no URL).
    """

    kind: str
    path: str
    host: str = ""

    @property
    def name(self) -> str:
        """str: the file name (the last part of ``path``)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def parse_uri(uri: str) -> ImageURI:
    """Read a task's image URI (see :class:`ImageURI`); a Label Studio path counts with or without its server."""
    if uri.startswith("data:"):
        return ImageURI("data", uri)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in CLOUD_SCHEMES:  # the scheme first: s3://bucket/data/upload/x is a bucket's object
        return ImageURI("cloud", urllib.parse.unquote(parts.path), parts.netloc)
    if parts.netloc and parts.scheme not in _WEB_SCHEMES:
        return ImageURI("other", uri)
    query = urllib.parse.parse_qs(parts.query)
    if parts.path.startswith("/data/local-files"):
        return ImageURI("local", query.get("d", [""])[0], parts.netloc)
    if parts.path.startswith("/storage-data/uploaded") and query.get("filepath"):
        return ImageURI("upload", query["filepath"][0].lstrip("/"), parts.netloc)
    if parts.path.startswith("/data/upload/"):
        return ImageURI("upload", urllib.parse.unquote(parts.path[len("/data/"):]), parts.netloc)
    if parts.scheme in _WEB_SCHEMES:
        return ImageURI("url", urllib.parse.unquote(parts.path), parts.netloc)
    if "://" in uri:
        return ImageURI("other", uri)
    return ImageURI("server" if uri.startswith("/") else "relative", uri)


def local_path(ref: ImageURI, uri: str, where: str) -> str:
    """str: the ``?d=`` path of a ``local`` URI (``ref = parse_uri(uri)``); a local-files URI without it: an error."""
    if not ref.path:
        raise fail(where, f"local-files URI without ?d=: {uri}", "re-export the tasks from Label Studio")
    return ref.path


def _uri_reference(uri: str, where: str) -> tuple[str, str]:
    """Split an image URI into ("upload", file name), ("name", file name) or ("rel", relative path)."""
    ref = parse_uri(uri)
    if ref.kind == "data":
        raise fail(where, "the image is embedded as a data: URI",
                   "import the photo as a file in Label Studio")
    if ref.kind == "local":
        return "rel", local_path(ref, uri, where)
    if ref.kind == "upload":
        return "upload", ref.name
    if ref.kind in ("url", "cloud"):
        return "name", ref.name
    return "rel", uri


def _check_relative(rel: str, uri: str, where: str) -> str:
    posix = rel.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(rel).drive or ".." in PurePosixPath(posix).parts:
        raise fail(where, f"image path {uri!r} is absolute or leaves the image folder ('..')",
                   "use paths relative to the image folder (dataset.images)")
    return PurePosixPath(posix).as_posix()


def _unique(hits: list[str] | None, index: ImageIndex, uri: str, where: str) -> str | None:
    if not hits:
        return None
    if len(hits) > 1:
        listed = ", ".join(sorted(hits)[:5]) + (" ..." if len(hits) > 5 else "")
        raise fail(where, f"image {uri!r} matches {len(hits)} files under {index.root}: {listed}",
                   "rename or remove the duplicates so each file name is unique")
    return hits[0]


def _missing(index: ImageIndex, name: str, uri: str, where: str) -> UserError:
    names = sorted(index.by_name)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    cands = [index.by_name[c][0] for c in close]
    hint = f"closest files: {', '.join(cands)}" if cands else f"{len(index)} image(s) there"
    not_utf8 = [n for n in names if not is_utf8(n)]
    if not_utf8:  # e.g. 'café.jpg' copied from a zip as b'caf\xe9.jpg'
        hint += f"; {len(not_utf8)} file name(s) there are not UTF-8, e.g. {os.fsencode(not_utf8[0])!r}"
    return fail(where, f"image {uri!r} not found under {index.root} ({hint})",
                f"put the photo '{name}' in {index.root} or fix the task's image path")


def resolve_image(
    uri: str, image_root: str | os.PathLike, index: ImageIndex | None = None, where: str = ""
) -> str:
    """Find the local file for a task's image URI (never outside ``image_root``).

    Handles ``/data/upload/<project>/<8 hex>-<name>`` (URL-decoded; the name as uploaded, then with
    the prefix stripped), newer ``/storage-data/uploaded/?filepath=upload/...``,
    ``/data/local-files/?d=<relative path>``, http(s)/s3/gs/azure-blob URLs (matched by file name) and
    plain relative paths. Lookup order: exact relative path (then its shorter tails, for a local-files
    root above ``image_root``), file name, then :func:`~maskseg_d2.data.images.normalize_name` (Label
    Studio turns spaces into ``_`` on upload).

    Args:
        uri (str): the value of the task's image field.
        image_root (str or PathLike): folder with the user's photos.
        index (ImageIndex or None): a prebuilt index of ``image_root`` (built when None).
        where (str): the item (file + task id), for errors.

    Returns:
        str: absolute path of the image.
    """
    index = index if index is not None else ImageIndex(image_root, where)
    kind, ref = _uri_reference(uri, where)
    if kind == "rel":
        return resolve_relative(ref, index, uri, where)
    return resolve_name(upload_names(ref) if kind == "upload" else [ref], index, uri, where)


def uri_names(uri: str, where: str = "") -> list[str]:
    """list[str]: the file names a task's image URI can be found under (cheap: no folder is searched)."""
    kind, ref = _uri_reference(uri, where)
    if kind == "upload":
        return upload_names(ref)
    return [PurePosixPath(ref.replace("\\", "/")).name] if kind == "rel" else [ref]


def upload_names(name: str) -> list[str]:
    """list[str]: lookup names of an uploaded file: as stored (``<8 hex>-<name>``), then as uploaded."""
    m = _UPLOAD_PREFIX.match(name)
    return [name, m.group(1)] if m else [name]


def resolve_relative(ref: str, index: ImageIndex, uri: str, where: str) -> str:
    """Resolve a path relative to the image root: exact, then its shorter tails, then by file name.

    Args:
        ref (str): the relative path (``/`` or ``\\`` separators); absolute or ``..`` is an error.
        index (ImageIndex): the image root's index.
        uri (str): what the annotation file says (for errors).
        where (str): the item, for errors.

    Returns:
        str: absolute path of the image.
    """
    ref = _check_relative(ref, uri, where)
    parts = PurePosixPath(ref).parts
    for i in range(len(parts)):
        tail = PurePosixPath(*parts[i:]).as_posix()
        if tail in index.relpaths:
            return index.path(tail, where)
    return resolve_name([parts[-1] if parts else ref], index, uri, where)


def resolve_name(names: list[str], index: ImageIndex, uri: str, where: str) -> str:
    """Resolve by file name anywhere under the image root (exact, then normalised); must be unique.

    Args:
        names (list[str]): candidate file names, most specific first.
        index (ImageIndex): the image root's index.
        uri (str): what the annotation file says (for errors).
        where (str): the item, for errors.

    Returns:
        str: absolute path of the image.
    """
    names = [unicodedata.normalize("NFC", n) for n in names]
    for lookup in (lambda n: index.by_name.get(n), lambda n: index.by_norm.get(normalize_name(n))):
        for name in names:
            hit = _unique(lookup(name), index, uri, where)
            if hit is not None:
                return index.path(hit, where)
    raise _missing(index, names[-1], uri, where)
