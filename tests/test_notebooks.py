"""notebooks/*.ipynb are committed without outputs, and 01_quickstart runs top to bottom with nbclient on a kernel
that is this interpreter (the venv's), against a tiny run trained here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"


def test_notebooks_have_no_outputs():
    assert QUICKSTART in NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, path.name
        for i, cell in enumerate(code):
            where = f"{path.name}, code cell {i}: strip outputs before committing (Kernel > Restart & Clear Output)"
            assert cell.outputs == [] and cell.execution_count is None, where
        assert nb.metadata.kernelspec.name == "python3"


@pytest.fixture(scope="module")
def notebook_run(train_tiny) -> Path:
    """A 3-iteration run with its final evaluation (score threshold 0, so AP is a number); the notebook writes
    into it, so it is its own run, not the shared one."""
    return train_tiny("solver.max_iter=3", "solver.warmup_iters=1", "num_vis=0", "logger=none")[0]


def _venv_kernel(tmp_path: Path, monkeypatch) -> str:
    """A kernelspec whose argv is this interpreter, found first on JUPYTER_PATH; Jupyter's state in tmp_path."""
    spec = tmp_path / "jupyter" / "kernels" / "maskseg-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "maskseg-d2 (test)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "maskseg-test"


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _pngs(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.outputs if o.output_type == "display_data")


@pytest.mark.slow
def test_quickstart_notebook_runs(notebook_run, tmp_path, monkeypatch):
    nb = nbformat.read(QUICKSTART, as_version=4)
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    # papermill-style injected parameters: draw every prediction of the barely trained model
    nb.cells.insert(params[0] + 1, nbformat.v4.new_code_cell("SCORE_THRESHOLD = 0.0"))
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    monkeypatch.setenv("MASKSEG_RUN", str(notebook_run))
    client = NotebookClient(nb, timeout=300, kernel_name=_venv_kernel(tmp_path, monkeypatch),
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) if any cell fails

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert _text(code[-1]).strip() == sys.executable  # the kernel is the venv's interpreter
    by_source = {c.source.splitlines()[0]: c for c in code if c.source}
    assert f"run:         {notebook_run}" in _text(by_source["run_dir = nb.find_run(RUN)"])
    assert "classes:     ['car', 'sign board']" in _text(by_source["run_dir = nb.find_run(RUN)"])

    table = _text(by_source["print(nb.ap_table(run_dir))"]).splitlines()
    results = json.loads((notebook_run / "eval" / "results.json").read_text())
    assert table[0].startswith("| task") and "AP50" in table[0]
    for row, task in zip(table[2:4], ("bbox", "segm")):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == task and cells[1] == f"{results[task]['AP']:.1f}"

    assert _pngs(by_source["fig = nb.show_gt_vs_pred(run_dir, num_images=2, score_threshold=SCORE_THRESHOLD)"]) == 1
    predict_cell = by_source["summary, fig = nb.predict_image(run_dir, IMAGE, score_threshold=SCORE_THRESHOLD)"]
    assert _pngs(predict_cell) == 1 and "predicted 1 image(s)" in _text(predict_cell)
    assert _pngs(by_source["fig = nb.plot_loss(run_dir)"]) == 1
    assert len(list((notebook_run / "notebook" / "gt_vs_pred").glob("*.png"))) >= 2
    assert len(list((notebook_run / "notebook" / "predict").rglob("*.jpg"))) == 1
