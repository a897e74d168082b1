"""Every override that an error message tells the user to type is accepted by the tool it is typed on.

The messages come from the error catalog (scripts/error_catalog.py reads every ``fail``/``UserError`` in the
source); each ``key=value`` in a message's fix is composed with Hydra's compose API against the config of the
tool(s) that raise it, exactly as that tool's command line would apply it, and a concrete value is checked
against the list the code validates it with. The unknown-label message builds its overrides from the data:
tests/data/test_class_map_override.py runs those.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from maskseg_d2.browse import _SPLITS as VIS_SPLITS
from maskseg_d2.data.loading import ON_ERROR_POLICIES, UNKNOWN_POLICIES
from maskseg_d2.deploy.exporter import FORMATS as EXPORT_FORMATS
from maskseg_d2.engine.evaluate import SPLITS as EVAL_SPLITS
from maskseg_d2.evaluation.cocoeval import BACKENDS
from maskseg_d2.predict.annotations import LS_SHAPES
from maskseg_d2.predict.runner import MODEL_BACKENDS
from maskseg_d2.predict.video import CODEC_EXT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import error_catalog  # noqa: E402

# Which tool's command line a fix is typed on: the first matching source prefix (a fix that names the tool,
# "python tools/eval.py run=...", is typed on that one instead). Shared modules list every tool that calls them.
TOOLS_OF = (
    ("maskseg_d2/browse.py", ("visualize",)),
    ("maskseg_d2/config.py", ("train",)),
    ("maskseg_d2/data/", ("train", "visualize")),  # configs/dataset/*.yaml: training and mode=gt
    ("maskseg_d2/deploy/backends.py", ("predict",)),  # predict's backend=eager|onnx|torchscript
    ("maskseg_d2/deploy/", ("export",)),
    ("maskseg_d2/engine/evaluate.py", ("eval",)),
    ("maskseg_d2/engine/leaderboard.py", ("eval",)),
    ("maskseg_d2/engine/run.py", ("eval", "predict", "export", "visualize")),  # every tool that opens a run
    ("maskseg_d2/engine/", ("train",)),
    ("maskseg_d2/evaluation/", ("eval",)),
    ("maskseg_d2/predict/", ("predict",)),
    ("maskseg_d2/serve/", ("serve",)),
    ("maskseg_d2/utils/preflight.py", ("train",)),
)
# The values the code accepts, for every key a fix suggests a concrete value for ("x": any value of that type).
VALID = {
    "backend": {"eval": BACKENDS, "predict": MODEL_BACKENDS},
    "dataset.on_error": ON_ERROR_POLICIES,
    "dataset.project": int,  # an id (or a title)
    "dataset.url": str,
    "dataset.unknown": UNKNOWN_POLICIES,
    "device": ("auto", "cpu", "cuda"),
    "format": EXPORT_FORMATS,
    "labelstudio.shape": LS_SHAPES,
    "labelstudio.url": str,
    "min_free_gb": int,
    "model.weights": ("zoo", "imagenet", "scratch"),
    "overfit_images": int,
    "split": {"visualize": VIS_SPLITS, "eval": EVAL_SPLITS},
    "video.codec": tuple(CODEC_EXT),
    "video.show": ("auto", "true", "false"),
    "gt": str,  # a file name
    "resume": ("true", "last"),
}
# what the user fills in: <run dir>, ‹name›, [...], and the example values /path/to/file, runA, runB
PLACEHOLDER = re.compile(r"<[^<>]*(?:<[^<>]*>[^<>]*)*>|‹[^›]*›|\.\.\.|/path/to/file|\brun[AB]\b")
XML_TAG = re.compile(r"<[A-Z][A-Za-z]*(?:\s[^<>]*)?/?>")  # <Label value="car"/> in a fix is a labeling config
# key=value; a value may hold <placeholders with spaces>, ‹…›, [lists] and a|b alternatives
OVERRIDE = re.compile(r"(?<![\w.\-/‹<])(\+?[a-z_][\w]*(?:\.[\w]+)*)=((?:<[^<>]*(?:<[^<>]*>[^<>]*)*>|‹[^›]*›|\[[^\]]*\]"
                      r"|[^\s,;)<‹\[])*)")
COMMAND = re.compile(r"python tools/(\w+)\.py ([^,;(]*)")


def suggestions() -> list[tuple[str, str, str]]:
    """(tool, override, where) for every key=value in every catalogued fix."""
    out = []
    for entry in error_catalog.catalog():
        file = entry.where.split(":")[0]
        tools = next((t for prefix, t in TOOLS_OF if file.startswith(prefix)), None)
        rest = XML_TAG.sub("", entry.fix)
        for tool, command in COMMAND.findall(entry.fix):
            out += [(tool, f"{k}={v}", entry.where) for k, v in OVERRIDE.findall(command)]
            rest = rest.replace(command, "")
        for key, value in OVERRIDE.findall(rest):  # tool None: the test says to add the file to TOOLS_OF
            out += [(tool, f"{key}={value}", entry.where) for tool in tools or [None]]
    return out


SUGGESTED = suggestions()


def test_the_catalog_has_suggestions_to_run():
    """The scan finds the fixes it should (guards the regexes against silently matching nothing)."""
    found = {o for _, o, _ in SUGGESTED}
    assert {"model.weights=scratch", "video.codec=MJPG", "backend=auto",
            "format=torchscript|onnx", "min_free_gb=0", "device=cpu"} <= found
    assert len(SUGGESTED) >= 30


def _alternatives(override: str) -> list[tuple[str, str]]:
    key, value = override.split("=", 1)
    concrete = PLACEHOLDER.sub("x", value)
    return [(key, v) for v in concrete.split("|")] if not value.startswith("[") else [(key, concrete)]


@pytest.fixture(scope="module")
def configs():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        yield lambda tool, overrides: compose(tool, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("tool, override, where", SUGGESTED, ids=[f"{t}:{o}" for t, o, _ in SUGGESTED])
def test_suggested_override_is_accepted(configs, tool, override, where):
    assert tool is not None, f"{where} suggests {override}: add its file and the tool it runs in to TOOLS_OF"
    for key, value in _alternatives(override):
        cfg = configs(tool, [f"{key}={value}"])  # raises as the tool's command line would (not in struct, ...)
        got = OmegaConf.select(cfg, key.lstrip("+"))
        if PLACEHOLDER.search(override) or not value:
            continue  # a value the user fills in ("gt= and pred= go together"): the key exists, compose checked it
        valid = VALID.get(key.lstrip("+"))
        assert valid is not None, f"{where} suggests {key}={value}: add the values the code accepts to VALID"
        valid = valid.get(tool) if isinstance(valid, dict) else valid
        assert valid is not None, f"{where} suggests {key}={value} to tools/{tool}.py: add its values to VALID[{key!r}]"
        if isinstance(valid, type):
            assert isinstance(got, valid), f"{where}: {key}={value} composes to {got!r}, not a {valid.__name__}"
        else:
            assert str(got).lower() in {str(v).lower() for v in valid}, f"{where}: {key}={value} not in {valid}"
