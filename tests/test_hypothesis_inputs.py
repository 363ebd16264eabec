"""Property-based bad input: random config overrides and odd image folders through ``statgan train``.

Every case must end either in a correct run (status 0, a checkpoint at the last step) or in status
2 with exactly one ``statgan: error: ...`` line — never an exception escaping ``main``, never a
traceback, and never a half-written run directory: a run that fails before its first step leaves
no directory at all, and one that fails later leaves a directory that records its progress.
"""

import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from statgan.cli import main
from statgan.rundir import checkpoint as ckpt

from conftest import toy_overrides

_counter = itertools.count()

# key -> values to try: valid ones, wrong types, out of range, unknown names, and values that make
# training itself fail (a learning rate of 1e6 diverges; nan_retries then decides how fast)
OVERRIDES = {
    "train.steps": [1, 2, 0, -1, "two", 2.5, "null"],
    "train.batch_size": [1, 2, 7, 0, 100000, "x"],
    "train.n_critic": [0, 1, 2],
    "train.lr_g": [1e-3, 0, -1e-3, "fast", 1e6, "inf", "nan"],
    "train.lr_d": [1e-3, 1e6, "1e-3"],
    "train.betas": ["[0.5, 0.9]", "[0.5]", "[0.5, 1.0]", "x"],
    "train.ema": ["false", "true", "maybe"],
    "train.ema_decay": [0.0, 0.5, 1.0],
    "train.log_every": [0, 1, 3],
    "train.grid_size": [0, 1, 5000],
    "train.precision": ["fp32", "bf16", "fp16", "fp8"],
    "train.nan_retries": [-1, 0, 1],
    "train.nan_lr_factor": [0, 0.5, 1, 2],
    "train.warmup_steps": [-1, 0, 5],
    "train.channels_last": ["true", "yes"],
    "train.tf32": ["null", "true", 3],
    "train.keep_checkpoints": [0, 1],
    "model.latent_dim": [0, 1, 3, "big"],
    "model.arch": ["mlp", "dcgan", "transformer"],
    "model.generator": ["{hidden: 4, depth: 1}", "{hidden: 0}", "{nope: 1}", "5", "{dropout: 0.5}"],
    "model.discriminator": ["{norm: batch}", "{norm: layer}", "{depth: 0}"],
    "objective.name": ["ns", "wgan-gp", "hinge", "lsgan", "gmmn", "fgan", "nope"],
    "objective.alpha": [0.5, -1],
    "regularizers.sam.rho": [0.1, -1, "big"],
    "regularizers.r1.weight": [1, -1],
    "regularizers.param_grad.weight": [0.1, "null"],
    "regularizers.mc_dropout.p": [0.5, 1.5],
    "regularizers.relaxation.sigma": [0.1, -0.1],
    "regularizers.sharpness.every": [1, 0],
    "regularizers.nope": ["true"],
    "data.name": ["8gaussians", "ring", "nope", "mnist5k"],
    "data.n": [1, 4, 64, 0],
    "run.device": ["cpu", "cuda", "gpu", "auto"],
    "run.seed": [-1, 3],
    "foo.bar": [1],
    "train": [1],
    "train.steps.x": [1],
}

override = st.sampled_from(sorted(OVERRIDES)).flatmap(
    lambda k: st.sampled_from(OVERRIDES[k]).map(lambda v: f"{k}={v}"))


def _base(out_dir, name, **extra):
    items = {"run.name": name, "train.steps": 2, "train.batch_size": 8, "train.log_every": 1,
             "train.sample_every": 0, "train.checkpoint_every": 0, "model.latent_dim": 2, **extra}
    return toy_overrides(out_dir, **items)


def _run(argv, capsys):
    """main(argv) -> (status, stderr); an exception escaping main fails the property."""
    capsys.readouterr()
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


def _check_outcome(status, out, err, run_dir: Path):
    assert "Traceback" not in err and "Traceback" not in out
    if status == 0:
        # a correct run: config, metrics and a checkpoint at the step it reports
        step = int(out.split("done: step ")[1].split()[0])
        assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file()
        assert ckpt.latest_checkpoint(run_dir / "checkpoints").name == f"step-{step:06d}.json"
        return
    assert status == 2, (status, err)
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("statgan: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    # whatever else is on stderr is the banner of a run that started, or statgan's own warnings
    assert all(l.startswith(("statgan ", "statgan: warning: ")) for l in lines[:-1]), err
    if run_dir.exists():  # only a run that got going may leave its directory: with a record of it
        recs = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert recs and (run_dir / "config.yaml").is_file(), err
    leftovers = [p for p in run_dir.parent.rglob("*.tmp")] if run_dir.parent.exists() else []
    assert not leftovers  # no temporary file from an interrupted atomic write


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(override, min_size=1, max_size=3))
def test_random_overrides_end_in_a_run_or_one_error_line(tmp_path, capsys, one_thread, items):
    name = f"r{next(_counter)}"
    status, out, err = _run(["train", "mnist5k-dcgan", *_base(tmp_path, name), *items], capsys)
    _check_outcome(status, out, err, tmp_path / name)


# ---- odd image folders ------------------------------------------------------------------------------
MODES = ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "I;16", "I", "F"]
SIZES = [(1, 1), (2, 3), (5, 1), (33, 17), (64, 64), (600, 400)]


def _write_image(path: Path, mode: str, size, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "P+transparency":
        img = Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L").convert("P")
        img.info["transparency"] = 0
        img.save(path, transparency=0)
        return
    if mode in ("I;16", "I"):
        arr = rng.integers(0, 65535, (h, w)).astype(np.uint16 if mode == "I;16" else np.int32)
        # uint16 -> "I;16" (PNG), int32 -> "I" (only TIFF holds it)
        Image.fromarray(arr).save(path if mode == "I;16" else path.with_suffix(".tif"))
        return
    if mode == "F":
        Image.fromarray(rng.random((h, w)).astype(np.float32), "F").save(path.with_suffix(".tiff"))
        return
    base = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")
    base.convert(mode).save(path)


image = st.tuples(st.just("image"), st.sampled_from(MODES), st.sampled_from(SIZES))
entry = st.one_of(
    image, image, image, image, image, image, image, image,  # mostly images: correct runs are common too
    st.tuples(st.just("garbage"), st.sampled_from([".png", ".jpg"]), st.just(None)),      # not an image at all
    st.tuples(st.just("truncated"), st.just(".png"), st.sampled_from(SIZES[2:5])),        # a cut PNG
    st.tuples(st.just("other"), st.sampled_from([".txt", ".json", ".DS_Store", ""]), st.just(None)),
    st.tuples(st.just("emptydir"), st.just(""), st.just(None)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(entry, min_size=0, max_size=8), channels=st.sampled_from([1, 3]),
       net=st.sampled_from([("mlp", 4), ("mlp", 8), ("dcgan", 28), ("dcgan", 8)]))
def test_odd_image_folders_end_in_a_run_or_one_error_line(tmp_path, capsys, one_thread, entries, channels, net):
    arch, image_size = net
    name = f"f{next(_counter)}"
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for i, (kind, what, size) in enumerate(entries):
        sub = folder / ("nested" if i % 3 == 2 else "")
        sub.mkdir(exist_ok=True)
        if kind == "image":
            _write_image(sub / f"img{i}.png", what, size, seed=i)
        elif kind == "garbage":
            (sub / f"junk{i}{what}").write_bytes(os.urandom(64))
        elif kind == "truncated":
            _write_image(sub / f"cut{i}.png", "RGB", size, seed=i)
            data = (sub / f"cut{i}.png").read_bytes()
            (sub / f"cut{i}.png").write_bytes(data[: len(data) // 2])
        elif kind == "other":
            (sub / f"note{i}{what}").write_text("not an image")
        else:
            (sub / f"empty{i}").mkdir()
    nets = ("{hidden: 8, depth: 1, output: tanh}", "{hidden: 8, depth: 1}") if arch == "mlp" else \
           ("{width: 2}", "{width: 2}")
    argv = ["train", "mnist5k-dcgan", *_base(tmp_path, name, **{
        "data.name": "folder", "data.root": str(folder), "data.image_size": image_size, "data.channels": channels,
        "train.batch_size": 2, "model.arch": arch, "model.generator": nets[0], "model.discriminator": nets[1],
        "train.grid_size": 4})]
    status, out, err = _run(argv, capsys)
    _check_outcome(status, out, err, tmp_path / name)


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path, capsys, one_thread, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        _write_image(folder / f"big{i}.png", "RGB", (40, 30), seed=i)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1200 pixels > 2 x 100: refused by PIL
    argv = ["train", "mnist5k-dcgan", *_base(tmp_path, "bomb", **{"data.name": "folder", "data.root": str(folder), "data.image_size": 8,
                                                 "train.batch_size": 2, "model.generator": "{hidden: 8, depth: 1}",
                                                 "model.discriminator": "{hidden: 8, depth: 1}"})]
    status, out, err = _run(argv, capsys)
    assert status == 2 and "cannot read image" in err and "big" in err and "decompression bomb" in err.lower()
    _check_outcome(status, out, err, tmp_path / "bomb")
    assert not (tmp_path / "bomb").exists()
