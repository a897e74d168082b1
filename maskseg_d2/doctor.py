"""``python -m maskseg_d2.doctor``: what this environment runs on (paste it into bug reports)."""
from __future__ import annotations

import platform

import torch

from . import compat
from .tracking import wandb_mode

try:
    import detectron2
except ImportError:  # the report says so (and how to install it) instead of failing to start
    detectron2 = None


def report() -> list[tuple[str, str]]:
    """Rows of (item, value)."""
    rows = [("python", platform.python_version()), ("torch", torch.__version__)]
    cuda = torch.cuda.is_available()
    rows.append(("CUDA", f"yes ({torch.version.cuda}, {torch.cuda.device_count()} GPU: "
                         f"{', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))})"
                 if cuda else "no (CPU only)"))
    if detectron2 is None:
        rows.append(("detectron2", "missing — run `make setup` (scripts/install_detectron2.py)"))
    else:
        rows.append(("detectron2", f"{detectron2.__version__} — {compat.detectron2_source()}"))
        ops = compat.has_compiled_ops()
        rows.append(("compiled ops", "yes" if ops else
                     "no (Mask R-CNN FPN works; rotated boxes, deformable conv and the C++ COCOeval need "
                     f"the official build: {compat.INSTALL_HOWTO})"))
    mode, why = wandb_mode()
    rows.append(("W&B mode", f"{mode} ({why})"))
    return rows


def main() -> None:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
