"""Checkpoint save/load time: SafeCheckpointer (temp file + fsync + rename, weights_only load) vs Detectron2's
DetectionCheckpointer (writes the final file in place, ``torch.load`` with torch's default).

    python benchmarks/bench_checkpoint.py                    # r18_fpn_scratch + SGD momentum (~124 MB)
    python benchmarks/bench_checkpoint.py --model r50_fpn_1x --repeats 5

Both sides save the same model + optimizer state into the same folder and load the file back into the model; the
sides alternate over ``--repeats`` rounds (Detectron2, ours, ours, Detectron2, ...) and the script prints the median
save and load times and the ratio Detectron2 / ours (< 1: ours is slower). The fsync is what makes the difference on
a real disk: it waits until the bytes are stored (what survives a power cut), where the plain save returns once the
page cache has them. Same output: both files hold the same keys and bit-identical tensors (model and optimizer
state) and the same iteration; a difference exits with status 1.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
from hydra import compose, initialize_config_dir

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.engine.checkpoint import SafeCheckpointer

from detectron2.checkpoint import DetectionCheckpointer  # isort: skip
from detectron2.modeling import build_model  # isort: skip
from _same import Mismatch, exit_on_mismatch  # isort: skip
from _timing import Sample, Stopwatch, interleave, machine, ratio_table  # isort: skip

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


def _flatten(obj, prefix: str = "") -> dict:
    """Nested dicts/lists of a checkpoint -> {dotted key: leaf}."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flatten(val, f"{prefix}{key}.").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, val in enumerate(obj) for k, v in _flatten(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj}


def check_same_files(plain: str, safe: str) -> int:
    """Both checkpoint files hold the same keys and equal values (tensors bit for bit); returns the tensor count."""
    a, b = (_flatten(torch.load(p, map_location="cpu", weights_only=True)) for p in (plain, safe))
    if set(a) != set(b):
        raise Mismatch(f"keys differ: only in Detectron2's {sorted(set(a) - set(b))[:5]}, only in ours "
                       f"{sorted(set(b) - set(a))[:5]}")
    differ = [k for k in a if not (torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k])]
    if differ:
        raise Mismatch(f"{len(differ)} value(s) differ, e.g. {differ[:5]}")
    return sum(torch.is_tensor(v) for v in a.values())


def _side(checkpointer_cls, model, state, folder: str, name: str) -> Sample:
    """Save to ``<folder>/<name>.pth``, then load it back into the model (checkpointers built untimed)."""
    watch, saver, loader = Stopwatch(), checkpointer_cls(model, folder, trainer=state), checkpointer_cls(model)
    with watch("save"):
        saver.save(name)
    with watch("load"):
        loader.load(os.path.join(folder, f"{name}.pth"))
    return Sample(watch.times)


@exit_on_mismatch
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r18_fpn_scratch", help="a configs/model/ name")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; the sides alternate (medians reported)")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir under outputs/)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    model, state = _model_and_state(args.model)
    base = args.dir or str(ROOT / "outputs")
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as folder:
        sides = {"DetectionCheckpointer": lambda r: _side(DetectionCheckpointer, model, state, folder, "plain"),
                 "SafeCheckpointer": lambda r: _side(SafeCheckpointer, model, state, folder, "safe")}
        out = interleave(sides, args.repeats)
        tensors = check_same_files(os.path.join(folder, "plain.pth"), os.path.join(folder, "safe.pth"))
        size = os.path.getsize(os.path.join(folder, "safe.pth")) / 2**20
    print(f"\n{args.model}: checkpoint {size:.0f} MB ({tensors} tensors, identical in both files), torch "
          f"{torch.__version__}, folder on {base}; {machine()}")
    print(ratio_table(out, "DetectionCheckpointer", "SafeCheckpointer", [("save", "save"), ("load", "load")]))


if __name__ == "__main__":
    main()
