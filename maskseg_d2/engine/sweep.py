"""Hydra callback for sweeps: each job's status lands in its dir; the sweep ends with a leaderboard.

Registered in ``configs/hydra/default.yaml`` (``hydra.callbacks.sweep_summary``). Works with any launcher
(basic, submitit): ``on_job_end`` runs in the job's process and writes ``<job dir>/job_status.json``;
``on_multirun_end`` runs where the sweep was launched and writes ``leaderboard.md``/``.csv`` into the sweep
dir through :func:`maskseg_d2.engine.leaderboard.compare_runs` — the same table as ``tools/eval.py compare=``.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..errors import UserError
from ..utils.secrets import redact_tree
from .leaderboard import compare_runs

__all__ = ["SweepSummary", "JOB_STATUS"]

JOB_STATUS = "job_status.json"
log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """Record every job's outcome; a failed job is marked, never hidden, and the sweep goes on."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.hydra_cfg is None or str(job_return.hydra_cfg.hydra.mode) != "RunMode.MULTIRUN":
            return
        status = {"num": job_return.hydra_cfg.hydra.job.num, "overrides": list(job_return.overrides or [])}
        if job_return.status == JobStatus.COMPLETED:
            status.update(status="COMPLETED", metric=job_return._return_value)
        else:
            err = job_return._return_value
            status.update(status="FAILED", error=f"{type(err).__name__}: {err}".splitlines()[0])
            log.error("sweep job #%s failed (%s): %s", status["num"], " ".join(status["overrides"]), status["error"])
        out_dir = str(job_return.hydra_cfg.hydra.runtime.output_dir)  # not working_dir: job.chdir is false
        with open(os.path.join(out_dir, JOB_STATUS), "w") as f:
            json.dump(redact_tree(status), f, indent=2, default=str)  # overrides may hold a token
        # Hydra's basic sweeper raises after a failed job before on_multirun_end: refresh the board now too.
        write_leaderboard(str(job_return.hydra_cfg.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_leaderboard(str(config.hydra.sweep.dir))


def write_leaderboard(sweep_dir: str) -> None:
    """``leaderboard.md``/``.csv`` over the jobs finished so far, failed ones listed with their error."""
    try:
        md, paths = compare_runs(sweep_dir)
    except UserError as e:  # e.g. every job failed before writing anything
        log.error("no sweep leaderboard: %s", e)
        return
    failed = _failed_jobs(sweep_dir)
    if failed:  # the leaderboard lists every job; say loudly which ones failed and why
        lines = [f"- job {j['num']} ({' '.join(j['overrides']) or 'no overrides'}): FAILED — {j['error']}"
                 for j in failed]
        with open(paths[0], "a") as f:
            f.write("\n## Failed jobs\n\n" + "\n".join(lines) + "\n")
        log.error("%d of the sweep's jobs failed; see %s", len(failed), paths[0])
    log.info("Sweep leaderboard (%s):\n%s", paths[0], md)


def _failed_jobs(sweep_dir: str) -> list[dict]:
    out = []
    for name in sorted(os.listdir(sweep_dir), key=lambda n: (len(n), n)):
        path = os.path.join(sweep_dir, name, JOB_STATUS)
        if os.path.isfile(path):
            with open(path) as f:
                status = json.load(f)
            if status.get("status") == "FAILED":
                out.append(status)
    return out
