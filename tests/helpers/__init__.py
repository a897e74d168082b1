"""Test-only helpers; benchmarks import some of them too. ``tests/`` is on sys.path (pytest adds the root
conftest's folder).

    synthetic        synthetic COCO ground truth + predictions of every object size
    wandb_offline    reads what an offline W&B run logged, without uploading
    json_mutations   mutations of valid exports for the property tests
    forked_tool      runs a tool's main() in a forked child (one import of the package for many cases)
    ddp_probe        tools/train.py with a per-rank probe (rank, world size, weight hashes) for the DDP test
    train_process    start a training subprocess, wait for a checkpoint, kill it (crash/resume tests)
    predictors       compare two predictors' instances (class, score, mask IoU)
    registry         pip-install into a test venv; skip only when the package index is unreachable
"""
