"""Sweeps and scale on existing engines: Hydra multirun (+ summary), an Optuna search run to its result file
(a NaN trial included), the metric lookup sweeps use, Optuna/submitit configs, CPU DDP (Gloo) checked per rank."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from detectron2.checkpoint import DetectionCheckpointer
from hydra import compose, initialize_config_dir

from helpers.ddp_probe import param_digest
from maskseg_d2.engine.run import Run
from maskseg_d2.evaluation import get_metric
from maskseg_d2.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
FAST = ["experiment=demo", "debug=fast", "device=cpu", "solver.max_iter=2", "solver.warmup_iters=1",
        "solver.ims_per_batch=2", "num_vis=0", "logger=none"]


def _train(*args, timeout=900):
    return subprocess.run([sys.executable, "tools/train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_optuna_and_slurm_configs_compose():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna", "hydra/launcher=slurm", "trainer.num_gpus=4",
                                           "trainer.num_machines=2"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
    assert "solver.base_lr" in cfg.hydra.sweeper.params and cfg.optimized_metric == "segm/AP"
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.nodes, launcher.tasks_per_node) == (4, 2, 1)


def _strict_json(path: Path):
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_get_metric_reads_the_nested_results():
    results = {"bbox": {"AP": 12.5, "AP50": 30.0}, "segm": {"AP": None, "APs": 1}}
    assert get_metric(results, "bbox/AP") == 12.5 and get_metric(results, "segm/APs") == 1.0
    assert math.isnan(get_metric(results, "segm/AP"))  # None: undefined (as results.json saves it) -> NaN
    with pytest.raises(KeyError, match=r"'segm/AP75'.*available: bbox/AP, bbox/AP50, segm/AP, segm/APs"):
        get_metric(results, "segm/AP75")
    with pytest.raises(KeyError, match="'val/total_loss'"):
        get_metric(results, "val/total_loss")


@pytest.mark.slow
def test_optuna_search_records_a_nan_trial_and_names_the_best_of_the_rest(demo_root, tmp_path):
    """2 trials of ``-m hparams_search=optuna`` (its TPE sampler, seed 1234), the test threshold searched too:
    at 1.0 nothing is predicted, segm/AP is undefined and the job returns NaN. That trial fails in the study
    (Optuna's rule for NaN) without ending the sweep, its job is COMPLETED with ``metric: null``, and
    optimization_results.yaml names the other trial's params and the metric it returned."""
    sweep = tmp_path / "sweep"
    thresh = "d2.MODEL.ROI_HEADS.SCORE_THRESH_TEST"
    fast = [o for o in FAST if not o.startswith("solver.warmup_iters=")]  # searched: the config's whole space
    proc = _train("-m", "hparams_search=optuna", *fast, f"dataset.root={demo_root}", f"hydra.sweep.dir={sweep}",
                  "hydra.sweeper.n_trials=2", f"{thresh}=choice(0.0,1.0)", "d2.TEST.DETECTIONS_PER_IMAGE=20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {}
    for i in (0, 1):
        status = _strict_json(sweep / str(i) / "job_status.json")  # NaN is written as null: valid JSON
        sampled = dict(o.split("=", 1) for o in status["overrides"] if o.split("=", 1)[0] in
                       ("solver.base_lr", "solver.warmup_iters", thresh))
        results = json.loads((sweep / str(i) / "eval" / "results.json").read_text())
        jobs[float(sampled[thresh])] = status, sampled, results
    assert sorted(jobs) == [0.0, 1.0], "seed 1234 samples each threshold once (optuna 2.10.1)"

    nan_status, _, nan_results = jobs[1.0]
    assert nan_status["status"] == "COMPLETED" and nan_status["metric"] is None
    assert nan_results["segm"]["AP"] is None  # undefined: no predictions
    assert "Failed experiment: metric segm/AP is NaN" in proc.stdout + proc.stderr

    best_status, best_sampled, best_results = jobs[0.0]
    assert best_status["status"] == "COMPLETED" and math.isfinite(best_status["metric"])
    assert best_status["metric"] == best_results["segm"]["AP"]  # what tools/train.py returned = results.json
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and best["best_value"] == best_status["metric"]
    assert {k: str(v) for k, v in best["best_params"].items()} == best_sampled
    board = (sweep / "leaderboard.csv").read_text().strip().splitlines()
    assert len(board) == 3  # header + both jobs


@pytest.mark.slow
def test_multirun_continues_past_a_failed_job_and_writes_the_summary(demo_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _train("-m", *FAST, f"dataset.root={demo_root}", f"hydra.sweep.dir={sweep}",
                  "model.weights=/no/such/weights.pth,scratch")
    assert proc.returncode != 0  # Hydra reports the failed job after the sweep ...
    bad, good = (json.loads((sweep / str(i) / "job_status.json").read_text()) for i in (0, 1))
    assert bad["status"] == "FAILED" and "/no/such/weights.pth" in bad["error"]
    assert good["status"] == "COMPLETED" and (sweep / "1" / "model_final.pth").exists()  # ... after running job 1
    board = (sweep / "leaderboard.md").read_text()
    assert "job 0" in board and "FAILED" in board and (sweep / "leaderboard.csv").exists()


@pytest.mark.slow
def test_two_jobs_in_one_process_do_not_collide(demo_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _train("-m", *FAST, f"dataset.root={demo_root}", f"hydra.sweep.dir={sweep}", "seed=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i in (0, 1):
        assert json.loads((sweep / str(i) / "job_status.json").read_text())["status"] == "COMPLETED"
        assert json.loads((sweep / str(i) / "eval" / "results.json").read_text())["segm"]
    rows = (sweep / "leaderboard.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 jobs


def _ddp_run(demo_root, run: Path, processes: int) -> subprocess.CompletedProcess:
    """tools/train.py with 2 iterations in ``processes`` Gloo processes, each rank probed (helpers/ddp_probe.py)."""
    return subprocess.run([sys.executable, "tests/helpers/ddp_probe.py", *FAST, f"dataset.root={demo_root}",
                           f"hydra.run.dir={run}", f"trainer.cpu_processes={processes}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


def _check_ddp(run: Path) -> str:
    """Two ranks ran, both in a world of 2, and kept bitwise-equal weights that training changed; -> their digest."""
    probes = [json.loads(p.read_text()) for p in sorted(run.glob("probe_rank*.json"))]
    seen = [(p["rank"], p["world_size"], p["ddp"]) for p in probes]
    assert sorted(p["rank"] for p in probes) == [0, 1], f"(rank, world size, model) seen: {seen}"
    assert [p["world_size"] for p in probes] == [2, 2] and len({p["pid"] for p in probes}) == 2
    assert {p["ddp"] for p in probes} == {"DistributedDataParallel"} and {p["iter"] for p in probes} == {2}
    # Detectron2's own record of each process (default_setup -> log.txt, log.txt.rank1)
    for rank, log in ((0, "log.txt"), (1, "log.txt.rank1")):
        assert f"Rank of current process: {rank}. World size: 2" in (run / log).read_text()
    p0, p1 = probes
    assert p0["before"] == p1["before"]  # DDP broadcast rank 0's init (each rank seeds SEED + rank)
    assert p0["after"] != p0["before"]  # training changed the weights ...
    assert p1["after"] == p0["after"]  # ... identically on both ranks: the gradients were all-reduced
    return p0["after"]


@pytest.mark.slow
def test_two_process_cpu_ddp_syncs_weights_and_its_checkpoint_loads(demo_root, tmp_path):
    run = tmp_path / "ddp"
    proc = _ddp_run(demo_root, run, processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = _check_ddp(run)

    state = torch.load(run / "model_final.pth", map_location="cpu", weights_only=True)
    assert state["iteration"] == 1 and not any(k.startswith("module.") for k in state["model"])
    assert (run / "last_checkpoint").read_text().strip() == "model_final.pth"
    art = Run.open(str(run), device="cpu")
    model = Trainer.build_model(art.d2cfg)
    DetectionCheckpointer(model).load(art.d2cfg.MODEL.WEIGHTS)
    assert set(state["model"]) == set(model.state_dict())  # every key matches: nothing left at its init
    assert param_digest(dict(model.named_parameters())) == trained  # the checkpoint holds the synced weights


def test_ddp_bad_input_is_one_line_before_any_worker_starts(demo_root, tmp_path):
    """A mistake every worker would make (here: weights that cannot be found) is reported once, exit 2."""
    run = tmp_path / "ddp_bad"
    proc = _train(*FAST, f"dataset.root={demo_root}", f"hydra.run.dir={run}", "trainer.cpu_processes=2",
                  "model.weights=/no/such/weights.pth", timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and "/no/such/weights.pth" in errors[0]
    assert not (run / "log.txt").exists()  # no worker ran default_setup
