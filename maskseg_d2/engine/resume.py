"""``resume=<run dir>`` / ``resume=last``: continue a run with its own settings (a Hydra callback).

The run's saved overrides (``.hydra/overrides.yaml``, or those of its latest resume) are applied again, then the
new command line; the result is compared with the run's config and only :data:`CHANGEABLE` keys may differ.
Hydra then writes into the old run dir (Detectron2's ``OUTPUT_DIR`` stays), its files for this session under
``.hydra/resume_<n>/`` so the first ``.hydra/config.yaml`` is kept; ``train`` appends the resume to
``run_info.json`` (:func:`maskseg_d2.utils.run_info.record_resume`).

Why a callback and not a second compose inside ``train()``: ``on_run_start`` runs after Hydra composed the
command line and *before* it creates the run dir, starts its log and writes ``.hydra/``; the back-end runs after
all three, in a new, empty run dir. Changing the config there is the one place where a rejected resume writes
nothing and an accepted one needs no second run dir.
"""
from __future__ import annotations

import json
import os
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..config import flatten_tree
from ..errors import UserError
from ..utils.cli import exit_on_user_error
from ..utils.run_info import read_run_info
from ..utils.secrets import REDACTED
from .run import Run

__all__ = ["ResumeRun", "CHANGEABLE", "settings_diff", "resume_requested", "session_dir"]

# Keys a resumed run may change (a key and everything under it). The rest fixes what was trained and how.
CHANGEABLE = (
    "resume",
    "solver.max_iter", "solver.epochs",  # train longer (the lr steps are fractions: they move with it)
    "solver.eval_period", "solver.checkpoint_period",  # how often to evaluate / save, not what is learned
    "logger",         # where the curves go (W&B continues its run: wandb_run_id.txt)
    "num_vis", "vis_score_threshold",  # the images drawn after training
    "device", "trainer",  # the machine: resume a GPU run elsewhere, on other GPUs (ims_per_batch is the total)
    "solver.cpu_amp",  # the machine's number format (bf16 where the CPU has it); auto may resolve differently anyway
    "min_free_gb",    # a disk check, not a setting
)


def session_dir(n: int) -> str:
    """Hydra's ``output_subdir`` of session ``n`` of a run: ``.hydra`` (the first), ``.hydra/resume_<n>``."""
    return ".hydra" if n == 0 else os.path.join(".hydra", f"resume_{n}")


def _changeable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in CHANGEABLE)


def settings_diff(old: dict, new: dict, changeable: bool = False) -> dict[str, list]:
    """Keys in both configs whose values differ, ``{key: [old, new]}``, either the :data:`CHANGEABLE` ones or
    the others. A key only one config has (added or removed by a newer maskseg-d2) is no difference: it was not
    a setting of the run; a secret value saved as ``***`` cannot be compared."""
    a, b = flatten_tree(old), flatten_tree(new)
    return {k: [a[k], b[k]] for k in a if k in b and a[k] != b[k] and _changeable(k) == changeable
            and not (isinstance(a[k], str) and REDACTED in a[k])}


def resume_requested(cfg: DictConfig, output_dir: str) -> bool:
    """Whether ``train`` continues the run in ``output_dir``: ``resume`` is true or names that dir (the callback
    set it); any other value was never handed to :class:`ResumeRun` (a sweep job)."""
    value = cfg.get("resume")
    if value is None or isinstance(value, bool):
        return bool(value)
    if os.path.abspath(str(value)) != os.path.abspath(output_dir):
        raise UserError(f"resume={value}: continues one run started by tools/train.py (not a sweep job, -m) — run "
                        f"python tools/train.py resume={value}")
    return True


def _find_run(config: DictConfig) -> str:
    value = config.resume
    if value is True:  # the spelling before resume=<run dir>: hydra.run.dir=<run dir> resume=true
        if not any(str(o).startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra):
            raise UserError("resume=true: which run? — give resume=<run dir> or resume=last")
        run_dir = str(config.hydra.run.dir)
    elif str(value) == "last":
        run_dir = Run.find_dir(None, root=str(config.paths.log_dir))
    else:
        run_dir = str(value)
    if not os.path.isfile(os.path.join(run_dir, ".hydra", "overrides.yaml")):
        raise UserError(f"resume={value}: {run_dir} is not a run dir (no .hydra/overrides.yaml) — give a dir "
                        "printed by tools/train.py, or resume=last")
    return os.path.abspath(run_dir)


def _latest_session(run_dir: str, recorded: int) -> int:
    """The session whose overrides continue: the latest of the ``recorded`` resumes of run_info.json that saved
    its overrides (one that stopped before training started is not recorded, and its ``.hydra/resume_<n>`` is
    reused)."""
    n = recorded
    while n > 0 and not os.path.isfile(os.path.join(run_dir, session_dir(n), "overrides.yaml")):
        n -= 1
    return n


def _merge(saved: list[str], new: list[str]) -> list[str]:
    """Saved overrides, then the new ones (Hydra applies them in order). A saved one that a new one sets again
    is dropped (the record stays short), except a saved ``+key=`` that a new ``key=`` needs to exist."""
    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    given = {key(o): o.startswith("+") for o in new}
    return [o for o in saved if key(o) not in given or (o.startswith("+") and not given[key(o)])] + new


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class ResumeRun(Callback):
    """Hydra callback (``configs/hydra/default.yaml``): turns ``resume=<run dir>|last`` into the run's own config,
    checked, in the run's own dir. Exits 2 with one line when it cannot."""

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        if config.get("resume") in (None, False):
            return
        with exit_on_user_error():
            self._continue(config, config_name)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume") not in (None, False):
            with exit_on_user_error():
                raise UserError(f"resume={config.resume}: continues one run — drop -m (a sweep starts new runs)")

    @staticmethod
    def _continue(config: DictConfig, config_name: str | None) -> None:
        run_dir = _find_run(config)
        recorded = len(read_run_info(run_dir).get("resumes", []))
        n = _latest_session(run_dir, recorded)
        saved = OmegaConf.load(os.path.join(run_dir, session_dir(n), "overrides.yaml"))
        task = _merge([str(o) for o in saved], [str(o) for o in config.hydra.overrides.task])
        loader = GlobalHydra.instance().config_loader()
        new = loader.load_configuration(config_name=config_name, run_mode=RunMode.RUN,
                                        overrides=[str(o) for o in config.hydra.overrides.hydra] + task)
        old = OmegaConf.to_container(OmegaConf.load(os.path.join(run_dir, session_dir(n), "config.yaml")))
        mine = OmegaConf.to_container(new, resolve=False)
        mine.pop("hydra")
        diff = settings_diff(old, mine)
        if diff:
            changes = ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in diff.items())
            raise UserError(f"resume: {run_dir} was trained with different settings: {changes} — continue with the "
                            "same values or start a new run")
        with read_write(new), open_dict(new):
            new.resume = run_dir
            new.hydra.run.dir = run_dir
            new.hydra.output_subdir = session_dir(recorded + 1)
        with read_write(config), open_dict(config):  # Hydra goes on with this object: its content is replaced
            for key in list(config.keys()):
                del config[key]
            for key in new.keys():
                config[key] = new[key]
