"""Config: presets, dotted overrides, and one-line errors naming the key and what is allowed."""

from pathlib import Path

import pytest

from statgan import config, models
from statgan.cli import main
from statgan.errors import ConfigError


def test_default_is_the_shipped_preset():
    cfg = config.load()
    preset = config.load(config.PRESET_DIR / f"{config.DEFAULT_PRESET}.yaml")
    assert cfg == preset
    # issue 13's winner at equal CPU time: DCGAN networks with the pairing loss and lazy R1/R2
    assert cfg.data.name == "mnist5k" and cfg.objective.name == "rpgan" and cfg.model.arch == "dcgan"
    assert set(cfg.regularizers) == {"r1", "r2"}


#: the recipe dcgan-rpgan-lazy-lr2e3-g1 of benchmarks/quality_per_minute.py (docs/quality.md), 10,000 steps
ISSUE_13_RECIPE = ["objective.name=rpgan", "model.discriminator={width: 32, norm: none}", "train.betas=[0.0, 0.99]",
                   "regularizers.r1={weight: 1, every: 16}", "regularizers.r2={weight: 1, every: 16}",
                   "train.ema_halflife_kimg=10", "train.ema_rampup=0.05", "train.lr_g=2e-3", "train.lr_d=2e-3",
                   "train.steps=10000", "train.sample_every=1000", "train.checkpoint_every=2000"]
SHORT = ["train.steps=10000", "train.sample_every=1000", "train.checkpoint_every=2000"]


def test_the_previous_default_is_the_old_default_plus_the_benchmarked_recipe():
    assert config.load("mnist5k-dcgan", ISSUE_13_RECIPE) == config.load("mnist5k-dcgan-rpgan")
    assert config.load("mnist5k-dcgan-rpgan-long", SHORT) == config.load("mnist5k-dcgan-rpgan")


def test_the_default_is_the_previous_one_with_a_base_convolution_in_d():
    # the recipe dbase1 of benchmarks/quality_per_minute.py (docs/quality.md, fifth screen)
    deepd = "model.discriminator={width: 32, norm: none, base_convs: 1}"
    assert config.load("mnist5k-dcgan-rpgan", [deepd]) == config.load()
    assert config.load("mnist5k-dcgan-rpgan-deepd-long", SHORT) == config.load()
    assert config.load("mnist5k-dcgan-rpgan-deepd") == config.load()


def test_the_deep_long_preset_is_the_default_with_a_base_convolution_in_g_too():
    # the recipe base1 of benchmarks/quality_per_minute.py, for 30,000 steps (docs/quality.md, sixth screen)
    deep_g = "model.generator={width: 32, norm: batch, base_convs: 1}"
    assert config.load("mnist5k-dcgan-rpgan-deep-long", SHORT) == config.load(None, [deep_g])
    assert config.load("mnist5k-dcgan-rpgan-deep-long").train.steps == 30000


def test_the_old_default_stays_a_named_preset():
    # its published numbers (lenet-FID 170 at 4,000 steps, the audit in docs/audit.md) stay reproducible
    old = config.load("mnist5k-dcgan")
    assert old.objective.name == "ns" and old.train.steps == 4000 and old.train.lr_g == 2e-4 and not old.regularizers


def test_every_shipped_preset_validates():
    names = config.presets()
    assert "mnist5k-dcgan" in names
    for name in names:
        config.load(name)  # raises on any invalid key


def test_repo_configs_folder_points_at_the_presets():
    repo_configs = Path(__file__).resolve().parents[1] / "configs"
    assert sorted(p.name for p in repo_configs.glob("*.yaml")) == sorted(f"{n}.yaml" for n in config.presets())


def test_overrides_are_typed_from_yaml_scalars():
    cfg = config.load("mnist5k-dcgan", ["train.steps=2000", "model.latent_dim=64", "train.betas=[0.0, 0.9]",
                             "train.lr_g=1e-3", "train.ema=false", "run.name=x"])
    assert cfg.train.steps == 2000 and isinstance(cfg.train.steps, int)
    assert cfg.model.latent_dim == 64
    assert cfg.train.betas == [0.0, 0.9]
    assert cfg.train.lr_g == pytest.approx(1e-3) and isinstance(cfg.train.lr_g, float)
    assert cfg.train.ema is False
    assert cfg.run.name == "x"


def test_integer_accepted_where_float_expected():
    assert config.load("mnist5k-dcgan", ["train.lr_d=1"]).train.lr_d == 1.0


def test_yaml_roundtrip(tmp_path):
    cfg = config.load("mnist5k-dcgan", ["train.steps=7", "objective.name=ns", "data.name=8gaussians", "model.arch=mlp",
                             "model.generator={}", "model.discriminator={hidden: 16}"])
    p = tmp_path / "c.yaml"
    cfg.save(p)
    assert config.load(p) == cfg


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.stepz=5", "unknown key 'train.stepz'; did you mean 'steps'?"),
        ("trian.steps=5", "unknown section 'trian'"),
        ("train.steps=abc", "train.steps: expected an integer, got 'abc'"),
        ("train.steps=0", "train.steps: 0 is out of range; expected ≥ 1"),
        ("train.steps=true", "train.steps: expected an integer"),
        ("train.betas=[0.5, 1.0]", "train.betas[1]"),
        ("train.betas=[0.5]", "train.betas: expected 2 values"),
        ("train.lr_g=-1", "train.lr_g: -1.0 is out of range; expected > 0"),
        ("train.tensorboard=maybe", "train.tensorboard: 'maybe' is not allowed"),
        ("objective.name=nope", "unknown objective 'nope'; expected one of"),
        ("objective.alpha=0.5", "objective 'ns' has no parameter 'alpha'"),
        ("data.name=nope", "unknown dataset 'nope'"),
        ("data.colour=3", "has no parameter 'colour'"),
        ("model.generator.widht=8", "has no parameter 'widht'"),
        ("model.arch=resnet9000", "unknown"),
        ("run.device=tpu", "run.device: 'tpu' is not allowed"),
        ("steps", "not of the form key=value"),
    ],
)
def test_bad_values_give_one_line_errors(override, fragment):
    with pytest.raises(ConfigError) as err:
        config.load("mnist5k-dcgan", [override])
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="neither a YAML file nor a preset"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        config.load(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        config.load(notmap)


def test_preset_by_name():
    assert config.resolve("mnist5k-dcgan") == config.PRESET_DIR / "mnist5k-dcgan.yaml"
    assert config.resolve("configs/mnist5k-dcgan.yaml").name == "mnist5k-dcgan.yaml"


def test_diff_names_changed_keys():
    a = config.load("mnist5k-dcgan")
    b = config.load("mnist5k-dcgan", ["train.steps=10", "objective.name=ns"])
    assert config.diff(a, b) == [f"train.steps: {a.train.steps!r} -> 10"]


@pytest.mark.parametrize("overrides", [
    ["objective.name=rkl"],
    ["objective.name=renyi", "objective.alpha=0.5"],
    ["objective.name=fgan", "objective.divergence=pearson"],
    ["objective.name=wgan-gp", "objective.gp_weight=5"],
    ["objective.name=gmmn"],
])
def test_objectives_selectable_with_parameters(overrides):
    cfg = config.load("mnist5k-dcgan", overrides)
    assert cfg.objective.name == overrides[0].split("=")[1]


@pytest.mark.parametrize("overrides, fragment", [
    (["objective.name=renyi", "objective.alpha=1"], "renyi: alpha=1 is not allowed"),
    (["objective.name=fgan", "objective.divergence=nope"], "fgan: divergence='nope'"),
    (["objective.name=wgan-gp", "objective.gp_weight=-1"], "wgan-gp: gp_weight=-1"),
])
def test_invalid_objective_values_rejected_when_built(overrides, fragment):
    cfg = config.load("mnist5k-dcgan", overrides)  # names are fine: values are checked where the objective is built
    with pytest.raises(ConfigError) as err:
        models.build_objective(cfg)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_objective_and_misspelt_parameter_rejected_at_load():
    with pytest.raises(ConfigError, match="unknown objective 'nonexistent'"):
        config.load("mnist5k-dcgan", ["objective.name=nonexistent"])
    with pytest.raises(ConfigError, match="objective 'renyi' has no parameter 'alpah'; did you mean 'alpha'"):
        config.load("mnist5k-dcgan", ["objective.name=renyi", "objective.alpah=0.3"])


def test_invalid_values_rejected_before_the_run_directory_exists(tmp_path, capsys):
    for i, bad in enumerate(["objective.gp_weight=-1", "regularizers.sam.rho=0", "model.generator.width=0"]):
        name = f"bad{i}"
        extra = ["objective.name=wgan-gp"] if bad.startswith("objective.") else []
        assert main(["train", "mnist5k-dcgan", *extra, bad, f"run.out_dir={tmp_path}", f"run.name={name}"]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith("statgan: error: ") and "\n" not in err and bad.split("=")[0].split(".")[-1] in err
        assert not (tmp_path / name).exists()


def test_resume_blockers_follow_the_declarations():
    saved = config.load("mnist5k-dcgan")
    new = config.load("mnist5k-dcgan", ["train.steps=10", "train.progress=false", "regularizers.sharpness.every=5",
                             "train.lr_g=0.1", "regularizers.sam=true"])
    blockers = config.resume_blockers(saved, new)
    # steps/progress are marked resumable and sharpness is a probe (changes_training = False)
    assert blockers == ["regularizers.sam: None -> {}", f"train.lr_g: {saved.train.lr_g!r} -> 0.1"]


@pytest.mark.parametrize("override", ["train=", "train={}", "train=null", "train=5", "model=[1, 2]", "regularizers="])
def test_a_whole_section_set_to_a_scalar_or_empty_value_is_an_error(override):
    # it used to replace the preset's whole section with built-in defaults (steps 4000 -> 2500) and start a long run
    with pytest.raises(ConfigError, match=r"is a section; set its keys"):
        config.load("mnist5k-dcgan", [override])


def test_a_section_mapping_override_merges_into_the_preset():
    cfg = config.load("mnist5k-dcgan", ["train={steps: 7, batch_size: 8}"])
    base = config.load("mnist5k-dcgan")
    assert (cfg.train.steps, cfg.train.batch_size) == (7, 8)
    assert cfg.train.lr_g == base.train.lr_g and cfg.train.ema_decay == base.train.ema_decay  # the rest is kept


def test_an_unknown_preset_gets_did_you_mean():
    with pytest.raises(ConfigError, match=r"'toy-8gausians' is neither a YAML file nor a preset; did you mean 'toy-8gaussians'"):
        config.load("toy-8gausians")
