"""Secrets never saved: credential values from the environment or typed on the command line are *** in every
file a real tools/train.py run writes (configs, run_info.json, logs, metrics, the offline W&B run)."""
import io
import json
import logging
import os
import secrets as pysecrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.wandb_offline import find_offline_runs, iter_records, wait_until_finished
from maskseg_d2.engine.run import Run
from maskseg_d2.errors import UserError
from maskseg_d2.utils import secrets as sec
from maskseg_d2.utils.cli import exit_on_user_error

ROOT = Path(__file__).resolve().parents[2]


def _token(prefix: str) -> str:
    return f"{prefix}_{pysecrets.token_hex(12)}"  # random: the registry is process-wide and only grows


def test_env_secrets_by_name_suffix_and_length(tmp_path):
    env = {"WANDB_API_KEY": "a" * 40, "HF_TOKEN": "hf_abcdef", "DB_PASSWORD": "hunter22",
           "MY_SECRET": "s3cr3t!", "SHORT_KEY": "abc", "PATH_KEY": str(tmp_path), "KEYBOARD": "not-a-secret",
           "TOKENIZER": "bert-base"}
    assert sec.env_secrets(env) == {"a" * 40, "hf_abcdef", "hunter22", "s3cr3t!"}


def test_config_secrets_are_credential_named_keys_resolved(monkeypatch, compose_cfg):
    token = _token("svc")
    monkeypatch.setenv("SVC_CREDENTIAL", token)  # name not credential-like: found through the config key
    cfg = compose_cfg("+logger.api_key=${oc.env:SVC_CREDENTIAL}", "+dataset.hub_token=literal123",
                      "+model.tokenizer=bert-base-uncased", "+solver.max_tokens=long-enough",
                      "dataset.image_key=picture_url", "+logger.wandbApiKey=camelCase1")
    # settings named like tokens or keys are not secrets
    assert sec.config_secrets(cfg) == {token, "literal123", "camelCase1"}


def test_redact_file_keeps_yaml_and_json_loadable(tmp_path):
    token = _token("tok")
    sec.register_secrets([token])
    y = tmp_path / "c.yaml"
    y.write_text(f"logger:\n  api_key: {token}\n  tags: [a, {token}x]\nlr: 0.02\n")
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"command": f"train.py +k={token}", "n": 3}))
    t = tmp_path / "log.txt"
    t.write_text(f"line {token} end\n")
    clean = tmp_path / "clean.yaml"
    clean.write_text("a: 1\n")
    assert [sec.redact_file(str(p)) for p in (y, j, t, clean)] == [True, True, True, False]
    assert yaml.safe_load(y.read_text()) == {"logger": {"api_key": "***", "tags": ["a", "***x"]}, "lr": 0.02}
    assert json.loads(j.read_text()) == {"command": "train.py +k=***", "n": 3}
    assert t.read_text() == "line *** end\n"


def test_log_records_are_redacted_for_handlers_made_later():
    token = _token("log")
    sec.register_secrets([token])
    sec.install_log_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # created after the hook, like Detectron2's log.txt handler
    log = logging.getLogger("maskseg_test_secrets")
    log.addHandler(handler)
    try:
        log.warning("key=%s", token)
        try:
            raise ValueError(f"bad value {token}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert token not in out and "key=***" in out and "ValueError: bad value ***" in out


def test_user_error_message_is_redacted(monkeypatch, capsys):
    token = _token("err")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", token)
    with pytest.raises(SystemExit) as info:
        with exit_on_user_error():
            raise UserError(f"logger.api_key={token}: not accepted")
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: logger.api_key=***: not accepted\n"


@pytest.mark.slow
def test_train_run_never_saves_a_secret(demo_root, tmp_path):
    wandb_key, service, hf, cli_only = pysecrets.token_hex(20), _token("svc"), _token("hf"), _token("cli")
    run_dir, home = tmp_path / "run", tmp_path / "home"
    env = {**os.environ, "WANDB_API_KEY": wandb_key, "MY_SERVICE_TOKEN": service, "HF_KEY": hf,
           "WANDB_MODE": "offline", "WANDB_DIR": str(run_dir), "HYDRA_FULL_ERROR": "1",
           **{v: str(home / v.lower()) for v in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")}}
    args = ["experiment=demo", "device=cpu", f"dataset.root={demo_root}", f"hydra.run.dir={run_dir}",
            "solver.ims_per_batch=2", "solver.warmup_iters=1", "solver.max_iter=2",
            "d2.DATALOADER.NUM_WORKERS=0", "num_vis=0", "logger=wandb", "logger.num_images=0",
            "logger.notes=${oc.env:MY_SERVICE_TOKEN}",  # interpolated from the environment
            f"logger.tags=[demo,{hf}]",                  # an env secret typed as a literal, innocent key
            f"+logger.api_key={cli_only}"]               # a literal known only by its key name
    proc = subprocess.run([sys.executable, "tools/train.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the run works: losses logged, final evaluation saved, the run dir re-opens with the redacted configs
    metrics = [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines()]
    assert any("total_loss" in m for m in metrics)
    assert "AP" in json.loads((run_dir / "eval" / "results.json").read_text())["segm"]
    assert Run.open(str(run_dir)).cfg.logger.api_key == "***"
    (wb,) = find_offline_runs(str(run_dir))
    assert wait_until_finished(wb)

    # no secret anywhere: every file under tmp_path (run dir, W&B offline run, W&B home), binary included
    values = [wandb_key, service, hf, cli_only]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 20 and {".wandb", ".pth", ".log", ".yaml"} <= {p.suffix for p in files}
    for p in files:
        data = p.read_bytes()
        assert not [v for v in values if v.encode() in data], p
    assert not [v for v in values if v in proc.stdout + proc.stderr]

    # *** where the secrets were
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "+logger.api_key=***" in overrides and "logger.tags=[demo,***]" in overrides
    assert "+logger.api_key=***" in (run_dir / ".hydra" / "hydra.yaml").read_text()
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())["logger"]
    assert resolved["notes"] == "***" and resolved["api_key"] == "***" and resolved["tags"] == ["demo", "***"]
    assert "+logger.api_key=***" in json.loads((run_dir / "run_info.json").read_text())["command"]
    assert "+logger.api_key=***" in (run_dir / "log.txt").read_text()  # Detectron2 logs the command line
    records = list(iter_records(wb))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.notes.startswith("***\nrun dir: ") and list(run.tags) == ["demo", "***"]
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["logger"]["notes"] == "***" and "api_key" not in config["logger"]
    assert not [r for r in records if r.WhichOneof("record_type") == "environment"]  # no argv in the metadata
