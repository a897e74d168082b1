"""Hydra callback for sweeps: each job's status lands in its dir; the sweep ends with a leaderboard.

Registered in ``configs/hydra/default.yaml`` (``hydra.callbacks.sweep_summary``). Works with any launcher
(basic, submitit): ``on_job_end`` runs in the job's process and writes ``<job dir>/job_status.json``;
``on_multirun_end`` runs where the sweep was launched and writes ``leaderboard.md``/``.csv`` into the sweep
dir through :func:`maskseg_d2.engine.leaderboard.compare_runs` — the same table as ``tools/eval.py compare=``.

A job whose metric is NaN (undefined, e.g. no predictions) completed: its ``job_status.json`` says so, with
``metric: null``. For a sweeper that optimizes the metric (``hparams_search=optuna`` sets ``nan_is_failure``)
it is also handed back as a failed job, so that the study records a failed trial and samples on: Optuna's rule
for NaN, which hydra-optuna-sweeper 1.3.0 breaks by ending the sweep with a ValueError (Hydra issue 2237,
fixed upstream after that release).
"""
from __future__ import annotations

import json
import logging
import math
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
    """Record every job's outcome; a failed job is marked, never hidden, and the sweep goes on.

    Args:
        nan_is_failure (bool): hand a job that returned NaN back to the sweeper as failed (its
            ``job_status.json`` still says COMPLETED, ``metric: null``).
    """

    def __init__(self, nan_is_failure: bool = False) -> None:
        self.nan_is_failure = nan_is_failure

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.hydra_cfg is None or str(job_return.hydra_cfg.hydra.mode) != "RunMode.MULTIRUN":
            return
        status = {"num": job_return.hydra_cfg.hydra.job.num, "overrides": list(job_return.overrides or [])}
        metric = job_return._return_value
        undefined = isinstance(metric, float) and math.isnan(metric)
        if job_return.status == JobStatus.COMPLETED:
            # NaN is null, as undefined numbers are in results.json: the file stays valid JSON
            status.update(status="COMPLETED", metric=None if undefined else metric)
        else:
            err = job_return._return_value
            status.update(status="FAILED", error=f"{type(err).__name__}: {err}".splitlines()[0])
            log.error("sweep job #%s failed (%s): %s", status["num"], " ".join(status["overrides"]), status["error"])
        out_dir = str(job_return.hydra_cfg.hydra.runtime.output_dir)  # not working_dir: job.chdir is false
        with open(os.path.join(out_dir, JOB_STATUS), "w") as f:
            json.dump(redact_tree(status), f, indent=2, default=str)  # overrides may hold a token
        # Hydra's basic sweeper raises after a failed job before on_multirun_end: refresh the board now too.
        write_leaderboard(str(job_return.hydra_cfg.hydra.sweep.dir))
        if undefined and self.nan_is_failure and job_return.status == JobStatus.COMPLETED:
            name = config.get("optimized_metric", "the metric")
            log.warning("sweep job #%s: %s is NaN (undefined, e.g. no predictions): a failed trial for the sweeper",
                        status["num"], name)
            job_return.status = JobStatus.FAILED  # the launcher returns this object to the sweeper
            job_return.return_value = ValueError(f"metric {name} is NaN (undefined, e.g. no predictions)")

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
