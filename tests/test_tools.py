"""The entry points as users run them: exit code 2 and one line for what they must fix."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, **kw):
    return subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_train_cars_signs_without_data_says_where_to_put_it(tmp_path):
    proc = _run(sys.executable, "tools/train.py", "experiment=cars_signs", f"paths.data_dir={tmp_path}",
                f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert f"Dataset 'cars_signs' not found under {tmp_path}/cars_signs" in line
    assert "labelstudio.json" in line and "labelme" in line


def test_make_train_cars_signs_without_data_exits_2(tmp_path):
    # PY= the interpreter running the tests; -o: do not re-run setup from inside the test suite.
    proc = _run("make", "-s", "-o", ".venv/.setup-stamp", "train", "EXP=cars_signs", f"PY={sys.executable}",
                f"ARGS=paths.data_dir={tmp_path} hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 2
    (line,) = _error_lines(proc.stderr)
    assert "Dataset 'cars_signs' not found" in line


def test_eval_without_run_is_one_line():
    proc = _run(sys.executable, "tools/eval.py")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _error_lines(proc.stderr) == [
        "error: run= is required — python tools/eval.py run=outputs/<task>/runs/<run dir> "
        "(or gt=<COCO json> pred=<results json>, or compare=[runA,runB])"]


def test_make_help_lists_targets():
    out = re.sub(r"\x1b\[[0-9;]*m", "", _run("make", "help").stdout)
    for target in ("setup", "test", "demo", "train", "eval", "predict", "sweep", "clean", "help"):
        assert re.search(rf"^  {target} +\S", out, re.M), target
