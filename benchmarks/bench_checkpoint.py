"""Checkpoint save/load time: SafeCheckpointer (temp file + fsync + rename, weights_only load) vs Detectron2's
DetectionCheckpointer (writes the final file in place, ``torch.load`` with torch's default).

    python benchmarks/bench_checkpoint.py                    # r18_fpn_scratch + SGD momentum (~130 MB)
    python benchmarks/bench_checkpoint.py --model r50_fpn_1x --repeat 5

Both sides save the same model + optimizer state into the same folder, alternating, ``--repeat`` times each, and
load the file back into the model; the script prints the median times and the ratio. The fsync is what makes
the difference on a real disk: it waits until the bytes are stored (what survives a power cut), where the
plain save returns once the page cache has them.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from hydra import compose, initialize_config_dir

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.engine.checkpoint import SafeCheckpointer

from detectron2.checkpoint import DetectionCheckpointer  # isort: skip
from detectron2.modeling import build_model  # isort: skip

ROOT = Path(__file__).resolve().parents[1]


class _State:
    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def state_dict(self) -> dict:
        return {"iteration": 1, "optimizer": self.optimizer.state_dict()}


def _model_and_state(model_name: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", "device=cpu", "model.weights=scratch"])
    data = SimpleNamespace(train_name="b_train", val_name="b_val", thing_classes=["a", "b"], mask_format="polygon",
                           num_train=4)
    model = build_model(build_d2_cfg(cfg, data, tempfile.gettempdir()))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # momentum buffers: a real training checkpoint is ~2x the weights
    return model, _State(opt)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r18_fpn_scratch", help="a configs/model/ name")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir under outputs/)")
    args = ap.parse_args()
    model, state = _model_and_state(args.model)
    base = args.dir or str(ROOT / "outputs")
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as folder:
        plain = DetectionCheckpointer(model, folder, trainer=state)
        safe = SafeCheckpointer(model, folder, trainer=state)
        times = {"plain save": [], "safe save": [], "plain load": [], "safe load": []}
        for _ in range(args.repeat):
            times["plain save"].append(_time(lambda: plain.save("model_plain")))
            times["safe save"].append(_time(lambda: safe.save("model_safe")))
            times["plain load"].append(_time(lambda: DetectionCheckpointer(model).load(f"{folder}/model_plain.pth")))
            times["safe load"].append(_time(lambda: SafeCheckpointer(model).load(f"{folder}/model_safe.pth")))
        size = os.path.getsize(os.path.join(folder, "model_safe.pth")) / 2**20
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = platform.processor() or platform.machine()
    print(f"{args.model}: checkpoint {size:.0f} MB, {args.repeat} repeats, {cpu}, "
          f"torch {torch.__version__}, folder on {base}")
    for op in ("save", "load"):
        p, s = med[f"plain {op}"], med[f"safe {op}"]
        print(f"  {op}: DetectionCheckpointer {p:.3f} s | SafeCheckpointer {s:.3f} s | ratio safe/plain {s / p:.2f}x")


if __name__ == "__main__":
    main()
