"""The overrides our messages print: Hydra's own parser and a POSIX shell read them back as the same strings.

The reference is Hydra (its override parser, and compose on the real configs) and shlex (the shell's word
splitting); the coverage properties make sure the builders do not give up (None) on labels Hydra can spell.
"""
from __future__ import annotations

import shlex
import string
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st

from maskseg_d2.utils.overrides import dict_override, list_override, shell, yaml_flow

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=200, deadline=None, database=None, derandomize=True)
# What a dict key may hold in Hydra's grammar (ASCII letters first, so never a number, bool or null)
KEY_TAIL = string.ascii_letters + string.digits + " _-/+.$%*@?|()[]{}:=,"
spellable_keys = st.builds(lambda head, tail: head + tail, st.sampled_from(string.ascii_letters),
                           st.text(KEY_TAIL, max_size=12)).filter(
    lambda k: k.strip().lower() not in {"null", "true", "false", "nan", "inf"})
values = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="'\"\\"), max_size=12)


def parse(override: str):
    return OverridesParser.create().parse_override(override).value()


@SETTINGS
@given(st.dictionaries(spellable_keys, values, min_size=1, max_size=4))
def test_spellable_maps_are_spelled_and_read_back(mapping):
    override = dict_override("dataset.class_map", mapping)
    assert override is not None, mapping  # every such label can be typed: the builder must not give up
    assert parse(override) == mapping
    assert shlex.split(shell(override)) == [override]


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), values, min_size=1, max_size=3))
def test_any_map_is_read_back_or_refused(mapping):
    override = dict_override("dataset.class_map", mapping)
    assert override is None or parse(override) == mapping  # never a text that reads back as something else


@SETTINGS
@given(st.lists(values, max_size=5))
def test_lists_are_spelled_and_read_back(items):
    override = list_override("dataset.classes", items)
    assert override is not None and parse(override) == items
    assert shlex.split(shell(override)) == [override]


@pytest.mark.parametrize("key", ["3", "true", "NULL", "inf", "Biển báo", "车", "Driver's", 'say "hi"'])
def test_keys_hydra_cannot_spell_get_none_and_a_yaml_line(key):
    import yaml

    assert dict_override("dataset.class_map", {key: "car"}) is None
    assert yaml.safe_load(f"class_map: {yaml_flow({key: 'car'})}") == {"class_map": {key: "car"}}


def test_printed_override_composes_on_the_dataset_config():
    mapping = {"Car": "car", "Sign Board": "sign board", "cars (old)": "car", "junk": None}
    override = dict_override("dataset.class_map", mapping)
    assert override == 'dataset.class_map={Car: car, Sign Board: "sign board", cars \\(old\\): car, junk: null}'
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for dataset in ("demo", "cars_signs"):
            cfg = compose("train", overrides=[f"dataset={dataset}", *shlex.split(shell(override))])
            assert dict(cfg.dataset.class_map) == mapping
