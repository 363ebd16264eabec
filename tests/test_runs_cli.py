"""`statgan runs`, `compare`, `plot`, `config show` and `list` through the real CLI."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import yaml

from statgan.cli import main

from conftest import toy_overrides


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "mnist5k-dcgan", *toy_overrides(root, **{"run.name": "a"})]) == 0
    assert main(["train", "mnist5k-dcgan", *toy_overrides(root, **{"run.name": "b", "objective.name": "hinge", "train.steps": 10})]) == 0
    return root


def test_runs_table(runs, capsys):
    capsys.readouterr()
    assert main(["runs", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "data", "arch", "objective", "regularizers", "step", "status", "latest", "eval"]
    rows = {l.split()[0]: l.split() for l in lines[2:]}
    assert rows["a"][1:7] == ["8gaussians", "mlp", "ns", "-", "20/20", "finished"]
    assert rows["b"][3] == "hinge" and rows["b"][5] == "10/10"


def test_compare_text_and_self_contained_html(runs, tmp_path, capsys):
    capsys.readouterr()
    page = tmp_path / "cmp.html"
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"objective\.name\s+ns\s+hinge", out) and re.search(r"train\.steps\s+20\s+10", out)
    assert "model.arch" not in out  # equal keys are not listed

    class Images(HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Images()
    parser.srcs = []
    parser.feed(page.read_text())
    assert len(parser.srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in parser.srcs)


def test_plot_overlays_runs(runs, tmp_path, capsys):
    assert main(["plot", str(runs / "a"), str(runs / "b"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(runs / "a"), "--out", str(tmp_path / "c.jpg")]) == 2
    assert "expected a .png file" in capsys.readouterr().err


def test_config_show_prints_the_resolved_yaml(capsys):
    assert main(["config", "show", "toy-8gaussians", "train.steps=7", "objective.name=hinge"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["steps"] == 7 and cfg["objective"]["name"] == "hinge" and cfg["data"]["name"] == "8gaussians"
    assert main(["config", "show", "train.stepz=3"]) == 2
    assert "unknown key 'train.stepz'" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["presets", "datasets", "archs", "objectives", "regularizers", "extractors", "metrics",
                                  "reproductions"])
def test_list_covers_every_family(what, capsys):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{what}: ") and "\n" not in out and len(out.split(": ")[1].split(", ")) >= 1
