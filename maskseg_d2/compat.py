"""Make the installed Detectron2 usable on today's stack; applied by ``import maskseg_d2``.

Detectron2 is either an official build (compiled ops present) or the Python-only registry copy
``pb1-detectron2==0.6`` (see ``scripts/install_detectron2.py``). For the latter we register a stub
``detectron2._C`` so that importing Detectron2 works; Mask R-CNN FPN needs none of its ops (nms and
RoIAlign come from torchvision), while rotated boxes, deformable conv and the fast C++ COCOeval do and
fail with a clear message instead of an ImportError deep inside Detectron2.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path

__all__ = ["apply", "enable_cpu_ddp", "has_compiled_ops", "detectron2_source", "CompiledOpsMissing", "INSTALL_HOWTO"]

INSTALL_HOWTO = (
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
    "(needs a C++/CUDA toolchain; https://detectron2.readthedocs.io/en/latest/tutorials/install.html)"
)
REGISTRY_MARKER = ".maskseg_registry_copy"  # written by scripts/install_detectron2.py


class CompiledOpsMissing(RuntimeError):
    """Raised when code needs one of Detectron2's C++/CUDA ops and only the Python copy is installed."""


class _CompiledOpsStub(types.ModuleType):
    """Stands in for ``detectron2._C``: informational calls answer, every op raises one clear line."""

    __maskseg_stub__ = True

    def __init__(self) -> None:
        super().__init__("detectron2._C", "stub for Detectron2's compiled ops (installed by maskseg_d2.compat)")

    # Detectron2's collect_env_info() (called by default_setup) asks these; answer instead of failing.
    @staticmethod
    def get_compiler_version() -> str:
        return "none (Python-only Detectron2, compiled ops stubbed)"

    @staticmethod
    def get_cuda_version() -> str:
        return "none"

    @staticmethod
    def has_cuda() -> bool:
        return False

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def _missing(*args, **kwargs):
            raise CompiledOpsMissing(
                f"{name} needs Detectron2's compiled ops; install the official build: {INSTALL_HOWTO}")

        _missing.__name__ = name
        return _missing


def _pillow_shim() -> None:
    # Pillow 10 removed Image.LINEAR; Detectron2 0.6 (data/transforms) still uses it as resample default.
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


def _quiet_known_warnings() -> None:
    # Noise from Detectron2 0.6 on today's stack that users cannot act on (we pin setuptools<82 for it).
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    # Detectron2 0.6's anchor generator (torch.meshgrid without indexing=) and mask stacking (read-only arrays
    # from the transforms): harmless, printed once per training run.
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"The given NumPy array is not writable", category=UserWarning)


def _stub_compiled_ops() -> None:
    if "detectron2._C" in sys.modules:
        return
    if importlib.util.find_spec("detectron2") is None:
        return  # detectron2 missing: maskseg_d2.doctor / the importers say so when it is needed
    if importlib.util.find_spec("detectron2._C") is not None:
        return  # official build
    import detectron2

    stub = _CompiledOpsStub()
    sys.modules["detectron2._C"] = stub
    detectron2._C = stub


def enable_cpu_ddp() -> None:
    """Let DefaultTrainer wrap a CPU model in DDP (Gloo workers, see maskseg_d2.engine.launch).

    Detectron2 0.6's ``create_ddp_model`` passes ``device_ids=[local_rank]``, which torch rejects for CPU
    modules; ``device_ids=None`` is the CPU form. GPU runs never call this.
    """
    import functools

    from detectron2.engine import defaults

    if not getattr(defaults.create_ddp_model, "_maskseg_cpu", False):
        patched = functools.partial(defaults.create_ddp_model, device_ids=None)
        patched._maskseg_cpu = True
        defaults.create_ddp_model = patched


def has_compiled_ops() -> bool:
    """True when the real ``detectron2._C`` extension is importable."""
    mod = sys.modules.get("detectron2._C")
    if mod is not None:
        return not getattr(mod, "__maskseg_stub__", False)
    return importlib.util.find_spec("detectron2") is not None and importlib.util.find_spec("detectron2._C") is not None


def detectron2_source() -> str:
    """'official', 'registry copy (pb1-detectron2==0.6)' or 'missing'."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return "missing"
    pkg = Path(list(spec.submodule_search_locations)[0])
    return "registry copy (pb1-detectron2==0.6)" if (pkg / REGISTRY_MARKER).exists() else "official"


_applied = False


def apply() -> None:
    """Idempotent; must run before the first Detectron2 import that touches ``_C``."""
    global _applied
    if _applied:
        return
    _quiet_known_warnings()
    _pillow_shim()
    _stub_compiled_ops()
    _applied = True
