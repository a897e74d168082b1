"""A Label Studio project labelled ``Car`` / ``Sign Board``: the unknown-label error says what to type, and what it
says works as typed (issue 17, item 10).

The export is the demo dataset's, relabelled; the reference is the same export with the original labels. Each
command the message prints is taken from the message itself, split as a POSIX shell splits it (shlex), applied
the way the tool applies its command line (Hydra compose; tools/convert.py's argv) and must load the data with
the instance counts of the reference. One case runs the printed text through bash and tools/visualize.py.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from maskseg_d2.data.register import register_dataset
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
RENAMED = {"car": "Car", "sign board": "Sign Board"}


def relabel(node, names: dict[str, str]):
    """The export with every label in a ``*labels`` list renamed (Label Studio's polygonlabels, brushlabels ...)."""
    if isinstance(node, dict):
        return {k: [names.get(x, x) for x in v] if k.endswith("labels") and isinstance(v, list) else relabel(v, names)
                for k, v in node.items()}
    return [relabel(x, names) for x in node] if isinstance(node, list) else node


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(root of a relabelled demo dataset, instances per class of the original labels)."""
    root = tmp_path_factory.mktemp("ls") / "demo"
    make_demo_dataset(root, num_images=4, seed=1)
    reference = register_dataset(_dataset(root)).thing_classes, _counts(root)
    export = root / "labelstudio.json"
    export.write_text(json.dumps(relabel(json.loads(export.read_text()), RENAMED)), encoding="utf-8")
    return root, reference


def _dataset(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"dataset.root={root}", *overrides])
    return cfg.dataset


def _counts(root: Path, *overrides: str) -> Counter:
    return _instances(register_dataset(_dataset(root, *overrides)))


def _instances(info) -> Counter:
    """Instances per class name over both splits of a registered dataset."""
    from detectron2.data import DatasetCatalog

    dicts = DatasetCatalog.get(info.train_name) + DatasetCatalog.get(info.val_name)
    return Counter(info.thing_classes[a["category_id"]] for d in dicts for a in d["annotations"])


def _error(root: Path, *overrides: str) -> str:
    with pytest.raises(UserError) as e:
        register_dataset(_dataset(root, *overrides))
    return str(e.value)


def _typed(message: str, after: str) -> list[str]:
    """The shell words of the command printed after ``after`` (up to the next ';' or ', or'), split as bash would."""
    text = message.split(after, 1)[1]
    return shlex.split(re.split(r";|, or ", text)[0])


def test_error_names_the_override_and_the_near_match(project):
    root, _ = project
    message = _error(root)
    assert "\n" not in message and "'Car' (" in message and "'Sign Board' (" in message
    assert "Car -> car, Sign Board -> sign board" in message
    assert """'dataset.class_map={Car: car, Sign Board: "sign board"}'""" in message  # exactly what to type
    assert "set dataset.unknown=skip" in message


def test_printed_class_map_fixes_the_error(project):
    root, (classes, counts) = project
    words = _typed(_error(root), "map them with ")
    assert words == ['dataset.class_map={Car: car, Sign Board: "sign board"}']
    assert _counts(root, *words) == counts and sum(counts.values()) > 0
    assert _counts(root, "+" + words[0]) == counts  # the old spelling keeps working


def test_unmatched_labels_get_a_classes_override_and_a_drop(project, tmp_path):
    root, (classes, counts) = project
    export = json.loads((root / "labelstudio.json").read_text())
    names = {"Car": "car", "Sign Board": "tree"}  # cars back to 'car'; sign boards become an unknown 'tree'
    (tmp_path / "export.json").write_text(json.dumps(relabel(export, names)), encoding="utf-8")
    base = [f"dataset.annotations={tmp_path / 'export.json'}", f"dataset.images={root / 'images'}"]
    message = _error(root, *base)
    assert "look like" not in message  # tree is like no class: no class_map guess
    grow = _typed(message, "to the classes with ")
    assert grow == ['dataset.classes=[car,"sign board",tree]']
    assert _counts(root, *base, *grow) == {"car": counts["car"], "tree": counts["sign board"]}
    drop = _typed(message, "drop them with ")
    assert drop == ["dataset.class_map={tree: null}"]
    assert _counts(root, *base, *drop) == {"car": counts["car"]}
    assert _counts(root, *base, "dataset.unknown=skip") == {"car": counts["car"]}


def test_a_label_no_override_can_spell_gets_the_yaml_line(project, tmp_path):
    root, (classes, counts) = project
    export = json.loads((root / "labelstudio.json").read_text())
    (tmp_path / "export.json").write_text(json.dumps(relabel(export, {"Sign Board": "Sign board 看板"})))
    base = [f"dataset.annotations={tmp_path / 'export.json'}", f"dataset.images={root / 'images'}",
            "dataset.class_map={Car: car}"]
    message = _error(root, *base)
    assert "Sign board 看板 -> sign board" in message  # Hydra's grammar takes no non-ASCII key: the YAML line
    line = message.split("this line in your configs/dataset/*.yaml: ", 1)[1].split(";")[0]
    assert yaml.safe_load(line) == {"class_map": {"Sign board 看板": "sign board"}}
    yaml_file = tmp_path / "dataset.yaml"
    yaml_file.write_text(line + "\n", encoding="utf-8")
    cfg = _dataset(root, *base)
    with open_dict(cfg):
        cfg.class_map = OmegaConf.merge(cfg.class_map, OmegaConf.load(yaml_file).class_map)  # as the YAML gives it
    info = register_dataset(cfg)
    assert info.thing_classes == classes and _instances(info) == counts


def test_convert_error_names_convert_options_that_work(project, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from convert import main
    finally:
        sys.path.remove(str(ROOT / "tools"))
    root, (classes, counts) = project
    argv = [str(root / "labelstudio.json"), "--image-root", str(root / "images"), "-o", str(tmp_path / "c.json"),
            "--classes", "car", "sign board"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "dataset." not in message
    words = _typed(message, "map them with ")
    assert words == ["--class-map", "Car=car", "Sign Board=sign board"]
    assert main(argv + words) == 0
    coco = json.loads((tmp_path / "c.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert Counter(names[a["category_id"]] for a in coco["annotations"]) == counts


def test_the_printed_text_works_in_a_shell(project, tmp_path):
    """The message's command pasted into bash after a tools/visualize.py command line: exit 2, then exit 0."""
    root, _ = project
    command = f"{shlex.quote(sys.executable)} tools/visualize.py mode=gt split=all num_images=2 " \
              f"dataset.root={shlex.quote(str(root))} output={shlex.quote(str(tmp_path / 'vis'))}"
    failed = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    printed = failed.stderr.strip().splitlines()[-1].split("map them with ", 1)[1].split(";")[0]
    fixed = subprocess.run(["bash", "-c", f"{command} {printed}"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert list((tmp_path / "vis").glob("*.png"))
