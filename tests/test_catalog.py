"""The light catalogue (names without torch) matches the live registries, and the CLI's start-up
path imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from statgan import catalog
from statgan.errors import ConfigError


def test_stored_catalogue_matches_the_registries():
    stored = json.loads(catalog.CATALOG_FILE.read_text())
    # an independent floor: members every family is known to have
    for family, member in (("dataset", "mnist5k"), ("generator", "dcgan"), ("discriminator", "stylegan"),
                           ("objective", "rpgan"), ("regularizer", "r1"), ("feature extractor", "lenet"),
                           ("metric", "fid"), ("reproduction", "bridging")):
        assert member in stored[family], (family, member)
    live = catalog.snapshot()
    for family in catalog.FAMILIES:
        assert stored[family] == live[family], (
            f"statgan/catalog.json is out of date for the {family} registry: run `python -m statgan.catalog`")


def test_catalogue_answers_like_the_registries():
    for family in catalog.FAMILIES:
        reg = catalog.registry(family)
        for name in reg.names():
            assert catalog.canonical(family, name) == reg.canonical(name)
            for alias in reg.aliases(name):
                assert catalog.canonical(family, alias) == name
    with pytest.raises(ConfigError, match=r"unknown objective 'nope'; expected one of: .*\bns\b"):
        catalog.canonical("objective", "nope")
    assert catalog.accepted("objective", "renyi") == ["alpha"]
    assert catalog.accepted("generator", "dcgan", n_positional=2) == ["width", "norm", "dropout", "dropout_slots", "progressive",
                                                                      "base_convs"]
    assert catalog.attribute("regularizer", "sharpness", "changes_training") is False


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list"], ["config", "show"],
                                  ["train", "train.steps=abc"], ["config", "explain", "train.steps"],
                                  ["audit", "--help"], ["reproduce", "--help"]])
def test_light_commands_never_import_torch(argv):
    code = ("import sys\nfrom statgan.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH", out.stdout + out.stderr
