"""scripts/install_detectron2.py on every Python that pyproject.toml admits, and pyproject's ranges vs the lock.

``extractall(filter="data")`` exists from 3.10.12 / 3.11.4 on; older 3.10/3.11 patch releases take the script's
own member checks. Both paths run here on small tars made in the test (the fallback forced by removing
``tarfile.data_filter``), the real filter being the reference for what must be refused.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import io
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # 3.10: requirements-dev.txt installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("install_detectron2", ROOT / "scripts" / "install_detectron2.py")
install = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(install)


def make_tar(path: Path, extra: list[tarfile.TarInfo] = ()) -> Path:
    """An sdist-shaped tar: pkg-0.6/detectron2/{__init__,a}.py, plus ``extra`` members (no data: links, paths)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in [("pkg-0.6/detectron2/__init__.py", b"VERSION = '0.6'\n"),
                           ("pkg-0.6/detectron2/model_zoo/a.py", b"A = 1\n"), ("pkg-0.6/setup.py", b"")]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o4777  # setuid + world-writable: must not survive
            tar.addfile(info, io.BytesIO(text))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, 1 if kind == tarfile.REGTYPE else 0
    return info


MALICIOUS = {
    "dotdot": member("pkg-0.6/detectron2/../../../evil.py"),
    "symlink out": member("pkg-0.6/detectron2/passwd", tarfile.SYMTYPE, "/etc/passwd"),
    "hardlink out": member("pkg-0.6/detectron2/shadow", tarfile.LNKTYPE, "../../../outside.txt"),
    "device": member("pkg-0.6/detectron2/null", tarfile.CHRTYPE),
}


@pytest.fixture(params=["data_filter", "fallback"])
def path_kind(request, monkeypatch):
    """Each test runs with Python's data filter and with the fallback of Pythons that lack it."""
    if request.param == "fallback":
        monkeypatch.delattr(tarfile, "data_filter")
    return request.param


def test_install_from_a_local_sdist(tmp_path, monkeypatch, path_kind):
    sdist = make_tar(tmp_path / "pb1-detectron2-0.6.tar.gz")
    monkeypatch.setattr(install, "SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    site = tmp_path / "site"
    site.mkdir()
    install.install_from(sdist, site)
    files = sorted(p.relative_to(site).as_posix() for p in (site / "detectron2").rglob("*") if p.is_file())
    assert files == ["detectron2/.maskseg_registry_copy", "detectron2/__init__.py", "detectron2/model_zoo/a.py"]
    mode = (site / "detectron2" / "__init__.py").stat().st_mode & 0o7777
    assert mode & 0o4000 == 0 and mode & 0o002 == 0  # no setuid, not world-writable
    assert (site / "pb1_detectron2-0.6.dist-info" / "METADATA").read_text().startswith("Metadata-Version")


@pytest.mark.parametrize("bad", list(MALICIOUS), ids=list(MALICIOUS))
def test_a_member_outside_or_a_link_is_refused(tmp_path, path_kind, bad, capsys):
    sdist = make_tar(tmp_path / "x.tar.gz", [MALICIOUS[bad]])
    dest = tmp_path / "a" / "b" / "c"
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar, pytest.raises(SystemExit) as e:
        install.extract(tar, tar.getmembers(), dest, sdist.name)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("install_detectron2: error: x.tar.gz: refusing to extract it") and err.count("\n") == 1
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "a" / "evil.py").exists()


def test_an_absolute_name_never_lands_outside(tmp_path, path_kind):
    """The filter strips the leading / (extracts under dest); the fallback refuses: neither writes outside."""
    target = tmp_path / "abs" / "evil.py"
    sdist = make_tar(tmp_path / "x.tar.gz", [member(str(target))])
    dest = tmp_path / "dest"
    dest.mkdir()
    with tarfile.open(sdist) as tar:
        if path_kind == "fallback":
            with pytest.raises(SystemExit):
                install.extract(tar, tar.getmembers(), dest, sdist.name)
        else:
            install.extract(tar, tar.getmembers(), dest, sdist.name)
            assert (dest / str(target).lstrip("/")).is_file()
    assert not target.exists()


def test_the_fallback_is_what_old_pythons_run():
    """The feature test matches the versions the filter came with (3.10.12, 3.11.4, 3.12)."""
    v = sys.version_info[:3]
    has_filter = v >= (3, 12) or (3, 11, 4) <= v < (3, 12) or (3, 10, 12) <= v < (3, 11)
    assert hasattr(tarfile, "data_filter") == has_filter


# ------------------------------------------------------------------------------------- pyproject vs the lock


def lock() -> dict[str, Version]:
    """name -> pinned version, from requirements.txt and requirements-dev.txt (the test and export tools)."""
    pins = {}
    for file in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r"):
                req = Requirement(line)
                (spec,) = req.specifier
                assert spec.operator == "==", f"{file}: {line} is not a pin"
                pins[req.name.lower()] = Version(spec.version)
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_pyproject_ranges_admit_the_tested_lock():
    pins = lock()
    extras = [d for group in project()["optional-dependencies"].values() for d in group]
    deps = [Requirement(d) for d in project()["dependencies"] + extras]
    assert deps, "pyproject [project] dependencies is empty: pip install -e . would install nothing"
    for req in deps:
        name = req.name.lower()
        assert name in pins, f"{req}: not in requirements.txt, so never tested"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} excludes the tested {name}=={pins[name]}"
        assert any(s.operator in (">=", "~=") for s in req.specifier), f"{req}: give a lower bound"


def test_torch_ranges_take_cuda_builds():
    """pytorch.org's wheels carry a local version (2.5.1+cu121): the ranges must admit them."""
    deps = {Requirement(d).name: Requirement(d).specifier for d in project()["dependencies"]}
    assert deps["torch"].contains("2.5.1+cu121") and deps["torch"].contains("2.14.1+cu128")
    assert deps["torchvision"].contains("0.20.1+cu121") and not deps["torch"].contains("2.4.1+cu121")


def imported_distributions() -> set[str]:
    """The distributions that maskseg_d2/ and tools/ import (top-level names, mapped by the installed metadata)."""
    modules = set()
    for path in [*(ROOT / "maskseg_d2").rglob("*.py"), *(ROOT / "tools").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"maskseg_d2", "detectron2", "__future__"}  # detectron2: the script
    by_module = importlib.metadata.packages_distributions()
    missing = sorted(m for m in modules if m not in by_module)
    assert not missing, f"imported but not installed here: {missing}"
    return {d.lower() for m in modules for d in by_module[m]}


# Imported only where the package is there by definition: maskseg_d2/notebook.py shows results inside a notebook.
NOT_DEPENDENCIES = {"ipython"}


def test_pyproject_lists_what_the_package_imports():
    listed = {Requirement(d).name.lower() for group in project()["optional-dependencies"].values() for d in group}
    listed |= {Requirement(d).name.lower() for d in project()["dependencies"]}
    assert imported_distributions() - NOT_DEPENDENCIES <= listed
    assert {"torch", "torchvision", "hydra-core", "pycocotools", "opencv-python-headless"} <= listed  # the scan works
    assert not listed & {"pytest", "ruff", "hypothesis", "import-linter"}  # test tools stay in requirements-dev.txt


def test_requires_python_admits_this_interpreter_and_the_supported_range():
    spec = SpecifierSet(project()["requires-python"])
    assert spec.contains(".".join(map(str, sys.version_info[:3])))
    assert all(spec.contains(v) for v in ("3.10.0", "3.11.0", "3.12.0", "3.13.0")) and not spec.contains("3.9.18")
