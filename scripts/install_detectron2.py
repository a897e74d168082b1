#!/usr/bin/env python
"""Install Detectron2 into the current interpreter's environment (called by `make setup`).

Detectron2 publishes no wheels on PyPI. The only registry copy is the sdist ``pb1-detectron2==0.6``:
upstream v0.6's Python code and model-zoo configs, but no C++ sources, so ``pip install`` of it fails.

Policy (idempotent):
1. ``import detectron2`` already works and is not our registry copy (an official build) -> keep it.
2. Our registry copy is already installed (marker file, same sha256) -> nothing to do.
3. Otherwise: ``pip download`` the sdist (the only network access), verify its sha256, and copy its
   ``detectron2/`` package (model-zoo configs included) into site-packages, Python-only. The missing
   compiled ops are stubbed by ``maskseg_d2.compat`` with a clear error.

No Detectron2 code is stored in this repository.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

SDIST = "pb1-detectron2==0.6"
SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
MARKER = ".maskseg_registry_copy"  # written inside the installed detectron2/ package
OFFICIAL_HOWTO = "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"


def fail(msg: str) -> None:
    print(f"install_detectron2: error: {msg}", file=sys.stderr)
    sys.exit(2)


def installed_state() -> str:
    """Return 'official', 'registry' or 'missing' for the current environment."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return "missing"
    pkg = Path(list(spec.submodule_search_locations)[0])
    marker = pkg / MARKER
    if marker.exists():
        return "registry" if marker.read_text().strip() == SHA256 else "missing"
    return "official"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(dest: Path) -> Path:
    # --no-build-isolation: pip prepares metadata with this env's torch (the sdist's setup.py imports it).
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--no-build-isolation", "-q", "-d", str(dest), SDIST]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = list(dest.glob("pb1-detectron2-*.tar.gz")) + list(dest.glob("pb1_detectron2-*.tar.gz"))
    if proc.returncode != 0 or not files:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        fail(f"could not download {SDIST} with pip ({last}); check that PyPI is reachable, "
             f"or install an official Detectron2 build first ({OFFICIAL_HOWTO})")
    return files[0]


def install_from(sdist: Path, site: Path) -> None:
    digest = sha256(sdist)
    if digest != SHA256:
        fail(f"{sdist.name}: sha256 {digest} != expected {SHA256}; refusing to install it")
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/detectron2/" in f"/{m.name}" and m.isreg()]
        extract(tar, members, Path(tmp), sdist.name)
        src = next(Path(tmp).glob("*/detectron2"))
        dst = site / "detectron2"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
    (dst / MARKER).write_text(SHA256 + "\n")
    write_dist_info(site, dst)


def extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path, label: str) -> None:
    """Extract ``members`` under ``dest``, refusing any that would land outside it or is not a plain file/dir.

    ``extractall(filter="data")`` does this from Python 3.8.17, 3.9.17, 3.10.12, 3.11.4 and 3.12 on; older
    patch releases of the Pythons we support have no ``filter`` argument, so they get the same checks here
    (stricter on absolute names, which the filter strips and this refuses).
    """
    if hasattr(tarfile, "data_filter"):
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as e:
            fail(f"{label}: refusing to extract it ({e})")
        return
    root = os.path.realpath(dest)
    for m in members:
        name = m.name.replace("\\", "/")
        target = os.path.realpath(os.path.join(root, name))
        if not (m.isreg() or m.isdir()):
            fail(f"{label}: refusing to extract it ({m.name!r} is a link or special file)")
        if name.startswith("/") or PureWindowsPath(name).drive or ".." in PurePosixPath(name).parts \
                or os.path.commonpath([root, target]) != root:
            fail(f"{label}: refusing to extract it ({m.name!r} is outside the destination)")
    safe = []
    for m in members:  # as the data filter: no setuid / world-writable bits, no owner taken from the tar
        m = copy.copy(m)  # (TarInfo.replace() came with the filter)
        m.mode, m.uid, m.gid, m.uname, m.gname = (m.mode or 0o644) & 0o755 | 0o600, 0, 0, "", ""
        safe.append(m)
    tar.extractall(dest, members=safe)


def write_dist_info(site: Path, pkg: Path) -> None:
    """Minimal .dist-info so `pip show pb1-detectron2` / `pip uninstall pb1-detectron2` work."""
    info = site / "pb1_detectron2-0.6.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pb1-detectron2\nVersion: 0.6\n"
        "Summary: Detectron2 v0.6 Python code (registry sdist, installed Python-only by maskseg-d2)\n"
    )
    (info / "INSTALLER").write_text("maskseg-d2\n")
    rows = [f"{p.relative_to(site).as_posix()},," for p in sorted(pkg.rglob("*")) if p.is_file()]
    rows += [f"{info.name}/{n},," for n in ("METADATA", "INSTALLER", "RECORD")]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, help="use this local pb1-detectron2-0.6.tar.gz instead of pip download")
    ap.add_argument("--force", action="store_true", help="reinstall the registry copy even if present")
    args = ap.parse_args()

    state = installed_state()
    if state == "official" and not args.force:
        print("detectron2: official build found, keeping it")
        return
    if state == "registry" and not args.force:
        print(f"detectron2: registry copy {SDIST} already installed")
        return
    site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download(Path(tmp))
        install_from(sdist, site)
    print(f"detectron2: installed {SDIST} (sha256 verified, Python-only) into {site}")


if __name__ == "__main__":
    main()
