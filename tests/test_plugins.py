"""Plugins: a package's entry points reach every command, and a run remembers where they came from.

The package is tests/plugin_site/statgan_demo_plugin (with its .dist-info, as pip would install it);
the commands run in fresh processes with that folder on PYTHONPATH, which is what installing it does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from statgan import catalog, config
from statgan.registry import PLUGIN_GROUPS, forget_plugins

SITE = Path(__file__).parent / "plugin_site"


def _statgan(*argv: str, plugin: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(([str(SITE)] if plugin else []) + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "statgan", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def installed(monkeypatch):
    """The demo plugin 'installed' in this process (its folder on sys.path); afterwards forgotten,
    and the registries hold only what they held before."""
    registries = [catalog.registry(family) for family in PLUGIN_GROUPS]
    before = [(dict(r._items), dict(r._aliases), dict(r._origins)) for r in registries]
    monkeypatch.syspath_prepend(str(SITE))
    forget_plugins()
    yield
    for r, (items, aliases, origins) in zip(registries, before):
        r._items, r._aliases, r._origins = items, aliases, origins
    forget_plugins()


def test_catalog_lists_plugins_without_loading_them(installed):
    assert "demo-digits" in catalog.names("dataset") and "demo-mlp" in catalog.names("generator")
    assert "statgan_demo_plugin" not in sys.modules  # listed from the entry points alone
    origin = catalog.plugins("objective")["demo-ns"]
    assert (origin.package, origin.version, origin.group) == ("statgan-demo-plugin", "0.1.0", "statgan.objectives")


def test_config_validates_plugin_members_and_records_their_packages(installed):
    cfg = config.load(None, ["data.name=demo-digits", "model.arch=demo-mlp", "objective.name=demo-ns",
                             "regularizers.demo-r1.weight=1", "model.generator={hidden: 8}"])
    recorded = {(o["family"], o["name"], o["package"]) for o in config.plugin_origins(cfg)}
    assert recorded == {("dataset", "demo-digits", "statgan-demo-plugin"),
                        ("generator", "demo-mlp", "statgan-demo-plugin"),
                        ("discriminator", "demo-mlp", "statgan-demo-plugin"),
                        ("objective", "demo-ns", "statgan-demo-plugin"),
                        ("regularizer", "demo-r1", "statgan-demo-plugin")}
    with pytest.raises(Exception, match="has no parameter 'width'"):  # the plugin's own signature, checked
        config.load(None, ["model.arch=demo-mlp", "model.generator={width: 8}"])


def test_train_eval_audit_with_a_plugin_and_name_it_when_missing(tmp_path):
    train = _statgan("train", f"run.out_dir={tmp_path}", "run.name=p", "data.name=demo-digits", "model.arch=demo-mlp",
                     "objective.name=demo-ns", "regularizers.demo-r1.weight=1", "model.latent_dim=4",
                     "train.steps=6", "train.batch_size=16", "train.log_every=3", "train.sample_every=0",
                     "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false")
    assert train.returncode == 0, train.stderr
    run = tmp_path / "p"
    recorded = json.loads((run / "plugins.json").read_text())
    assert {o["name"] for o in recorded} == {"demo-digits", "demo-mlp", "demo-ns", "demo-r1"}

    listed = _statgan("list", "datasets")
    assert "demo-digits (plugin: statgan-demo-plugin)" in listed.stdout

    ev = _statgan("eval", str(run), "--n", "64", "--metrics", "fid", "--extractor", "pixels", "--no-progress")
    assert ev.returncode == 0, ev.stderr
    assert "fid" in ev.stdout.lower()

    au = _statgan("audit", str(run), "--quick", "--n", "8", "--n-valid", "8", "--n-ood", "4", "--ood", "noise",
                  "--steps", "5", "--ais-steps", "4")
    assert au.returncode == 0, au.stderr
    assert (run / "audit" / "report.html").is_file()

    # the same run where the plugin is not installed: one line naming the package
    for argv in (("eval", str(run), "--n", "64", "--metrics", "fid", "--extractor", "pixels"),
                 ("audit", str(run), "--quick"), ("sample", str(run), "--out", str(tmp_path / "s.png"))):
        missing = _statgan(*argv, plugin=False)
        assert missing.returncode == 2, missing.stderr
        lines = missing.stderr.strip().splitlines()
        assert len(lines) == 1 and "statgan-demo-plugin 0.1.0" in lines[0] and "pip install statgan-demo-plugin" in lines[0], \
            missing.stderr


def test_a_broken_plugin_is_a_warning_and_its_name_says_why(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "broken_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "broken_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (site / "broken_plugin-1.0.dist-info" / "entry_points.txt").write_text("[statgan.objectives]\nbroken = broken_plugin:Nope\n")
    (site / "broken_plugin.py").write_text("raise ImportError('needs a library that is not here')\n")
    env_path = os.pathsep.join([str(site), str(SITE)])
    ok = subprocess.run([sys.executable, "-m", "statgan", "config", "show", "objective.name=demo-ns"],
                        env={**os.environ, "PYTHONPATH": env_path}, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr  # an unrelated broken plugin does not stop the others
    bad = subprocess.run([sys.executable, "-m", "statgan", "config", "show", "objective.name=broken"],
                         env={**os.environ, "PYTHONPATH": env_path}, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "its plugin failed to load: ImportError: needs a library that is not here" in bad.stderr


def test_a_member_registered_from_python_trains_and_a_later_command_says_what_is_missing(tmp_path):
    script = tmp_path / "mine.py"
    script.write_text(
        "import sys, torch\n"
        "from statgan.data import DATASETS\n"
        "from statgan.cli import main\n"
        "@DATASETS.register('mine')\n"
        "def mine(split='train', root=None, n=128):\n"
        "    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0 if split == 'train' else 1))\n"
        "sys.exit(main(sys.argv[1:]))\n")
    from conftest import toy_overrides

    argv = toy_overrides(tmp_path, **{"data.name": "mine", "run.name": "mine"})
    done = subprocess.run([sys.executable, str(script), "train", *argv], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    (recorded,) = json.loads((tmp_path / "mine" / "plugins.json").read_text())
    assert recorded["package"] is None and recorded["value"] == "__main__:mine"
    ev = _statgan("eval", str(tmp_path / "mine"), "--n", "32", "--metrics", "fid", plugin=False)
    assert ev.returncode == 2
    (line,) = ev.stderr.strip().splitlines()
    assert "dataset 'mine' registered from Python (__main__:mine)" in line and "statgan.datasets" in line, line
