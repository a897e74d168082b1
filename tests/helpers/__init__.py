"""Test-only helpers (synthetic COCO sets, W&B offline-run reader, JSON mutations, forked tool runner);
benchmarks import them too. ``tests/`` is on sys.path (pytest adds the root conftest's folder)."""
