"""`statgan audit` of a generator from elsewhere that comes with neither, one or both image sets.

What needs a missing set is reported as "not run" with the flag that gives it -- never computed from
a stand-in, never silently dropped -- and everything that needs only the generator still runs: the
generated set, BDMC on model samples, typicality against them, the OOD sets (made from generated
images when there are no test images). The generator is a narrow, randomly initialised 64x64 RGB
DCGAN of the PyTorch DCGAN tutorial's shape, defined here and loaded as ``THIS_FILE.py:dcgan``.
"""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from statgan.audit import verdicts
from statgan.audit.rundata import load_run
from statgan.audit.run import audit_run
from statgan.audit.settings import AuditSettings
from statgan.audit.stages import FIXED_SIGMA, image_sets
from statgan.audit.summary import AuditSummary, from_json, missing_reason, to_json
from statgan.cli import main
from statgan.generator_source import GeneratorOptions, load_generator_source

#: tiny settings: a few seconds per audit on two cores (the numbers mean little; the structure is tested)
SETTINGS = AuditSettings.quick(n=8, n_valid=4, n_ood=4, ood=("glyphs", "noise", "inverted"))
FAST_FLAGS = ["--quick", "--n", "8", "--n-valid", "4", "--n-ood", "4", "--ood", "glyphs,noise,inverted"]
OPTIONS = GeneratorOptions(latent_shape=(100, 1, 1))
#: what each finding needs (verdicts module docstring); (c) runs without training images, its part 1 not
NEEDS = {"a": ("train",), "b": ("test",), "d": ("train",), "memorisation": ("train", "test")}
FLAGS = {"train": "--train SET", "test": "--test SET"}
COMPUTED = ("holds", "partly holds", "does not hold", "unresolved")


def dcgan(ngf: int = 4, nz: int = 100, nc: int = 3, seed: int = 0) -> nn.Module:
    """The PyTorch DCGAN tutorial's generator, (B, nz, 1, 1) -> (B, nc, 64, 64) in [-1, 1], ngf
    narrowed to 4, weights from ``seed``. BatchNorm's running statistics are those of one batch of
    latents, so the eval-mode network makes varied images instead of near-constant grey."""
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(seed)

        def up(c_in: int, c_out: int, stride: int, padding: int) -> list:
            return [nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False),
                    nn.BatchNorm2d(c_out, momentum=None), nn.ReLU(True)]

        net = nn.Sequential(*up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4, 2, 1), *up(ngf * 4, ngf * 2, 2, 1),
                            *up(ngf * 2, ngf, 2, 1), nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
        with torch.no_grad():
            net.train()(torch.randn(64, nz, 1, 1))
    return net.eval()


def _spec() -> str:
    """``tests/test_audit_missing_sets.py:dcgan``, relative to the working directory when it can be."""
    here = Path(__file__).resolve()
    try:
        here = here.relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return f"{here}:dcgan"


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def loaded():
    return load_generator_source(_spec(), OPTIONS)


def _npz(path: Path, seed: int, n: int = 12) -> str:
    """``n`` 64x64 RGB uint8 images (NHWC) near the generator's outputs, like a folder of its data."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = dcgan()(torch.randn(n, 100, 1, 1, generator=g)) + 0.05 * torch.randn(n, 3, 64, 64, generator=g)
    images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.savez(path, images=images)
    return str(path)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list = []

    def handle_data(self, data):
        self.text.append(data)


def _check_findings(s: AuditSummary, missing: tuple) -> None:
    """Each finding that needs a missing set is "not run", says which and names the flag; the others
    are computed; (c) runs, its part 1 marked not run without training images."""
    by_id = {f.id: f for f in s.findings}
    assert list(by_id) == ["a", "b", "c", "d", "memorisation"]
    for fid, needs in NEEDS.items():
        f, lacking = by_id[fid], [k for k in needs if k in missing]
        if lacking:
            assert f.verdict == "not run" and verdicts.verdict_of(f.text) == "not run", (fid, f.text)
            assert missing_reason(lacking) in f.text
            assert all(FLAGS[k] in f.to_resolve for k in lacking) and f.numbers == {"missing": lacking}
        else:
            assert f.verdict in COMPUTED and verdicts.verdict_of(f.text) == f.verdict, (fid, f.text)
    c = by_id["c"]
    assert c.verdict in COMPUTED and verdicts.verdict_of(c.text) == c.verdict
    if "train" in missing:
        assert c.numbers["not_run"] == ["part 1"] and "part 1 was not run" in c.text and "--train SET" in c.to_resolve
    else:
        assert "not_run" not in c.numbers and "Part 1: log-likelihood" in c.text


def _check_common(s: AuditSummary, out: Path, missing: tuple) -> None:
    """What every audit has, whatever it lacks, and what a missing set leaves out."""
    assert s.data_shape == (3, 64, 64) and s.latent_dim == 100 and s.step is None and s.fid is None
    assert set(s.missing_sets or {}) == set(missing)
    for k in missing:
        assert FLAGS[k] in s.missing_sets[k] and k not in s.splits
    assert ("valid" in s.splits) == ("test" not in missing)
    # the generator's own sets: generated images, the OOD sets, BDMC on model samples
    assert {"generated", "glyphs", "noise", "inverted", "model_samples"} <= set(s.splits)
    b = s.bdmc
    assert b.n_images == SETTINGS.bdmc_images and len(b.gaps) == b.n_images
    assert all(math.isfinite(v) for v in (b.lower.mean, b.upper.mean, b.gap.median, b.lower_importance_sampling.mean,
                                          s.splits["model_samples"].log_likelihood.median, s.sigma.chosen))
    model = s.typicality.model_typical_set.sets
    assert "generated" in model and all((k in model) == (k not in missing) for k in ("train", "test"))
    assert math.isfinite(model["generated"].entropy) and math.isfinite(model["generated"].epsilon)
    if missing:  # no OOD test: its reference needs training and valid images; the OOD sets join the model's
        assert s.typicality.ood_test is None and {"glyphs", "noise", "inverted"} <= set(model)
    assert (s.memorisation is None) == bool(missing)
    # the files, and summary.json is exactly the summary, read back as it was
    text = (out / "summary.json").read_text()
    assert s.paths is not None and Path(s.paths.report) == out / "report.html"
    assert to_json(s) == text and to_json(from_json(text)) == text and from_json(text) == s
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(page)
    words = " ".join(parser.text)
    assert "Traceback" not in page and words.count("Not run:") >= len(missing) + (1 if missing else 0)
    assert all(FLAGS[k] in words for k in missing)


def test_a_generator_with_neither_set_runs_what_needs_only_the_generator(loaded, tmp_path):
    s = audit_run(loaded, SETTINGS, out_dir=tmp_path, log=None)
    missing = ("train", "test")
    _check_common(s, tmp_path, missing)
    _check_findings(s, missing)
    assert s.sigma.chosen == FIXED_SIGMA and not s.sigma.candidates
    assert s.sigma.method == "fixed at 0.1: no held-out images to choose it (give --sigma or --test)"
    assert s.auroc == {} and s.correlation.test is None and set(s.correlation.per_set) == {"glyphs", "noise", "inverted"}
    assert s.inversion.train_over_generated is None and s.inversion.test_over_generated is None
    # the OOD sets are the generator's size, made from its own images (blurred / inverted need a reference)
    sets = image_sets(load_run(loaded, SETTINGS.seed), SETTINGS)
    assert sets.train is None and sets.test is None and sets.valid is None
    assert {k: tuple(v.shape) for k, v in sets.ood.items()} == {k: (4, 3, 64, 64) for k in ("glyphs", "noise", "inverted")}


def test_the_cli_audits_a_generator_file_with_no_image_sets(tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", _spec(), "--latent-shape", "100,1,1", *FAST_FLAGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(a) The GAN does not pass through its training images: not run" in printed
    assert "(*) The generator memorises its training images: not run" in printed
    s = from_json((out / "summary.json").read_text())
    assert set(s.missing_sets) == {"train", "test"} and (out / "report.html").is_file()
    assert s.run == _spec() and s.generator is not None and s.generator.latent_shape == (100, 1, 1)


@pytest.mark.parametrize("given", ["test", "train"])
def test_one_set_given_runs_what_needs_it_and_marks_the_rest_not_run(loaded, tmp_path, given):
    path = _npz(tmp_path / f"{given}.npz", seed={"train": 1, "test": 2}[given])
    missing = tuple(k for k in ("train", "test") if k != given)
    s = audit_run(loaded, SETTINGS, out_dir=tmp_path / "audit", log=None, **{given: path})
    _check_common(s, tmp_path / "audit", missing)
    _check_findings(s, missing)
    assert s.splits[given].n == SETTINGS.n
    some = s.auroc["glyphs"]
    if given == "test":  # sigma chosen on the valid images; OOD AUROCs against test images only
        assert s.sigma.candidates and s.splits["valid"].n == SETTINGS.n_valid
        assert some.auroc_inversion is not None and some.auroc_likelihood_vs_train is None
        assert s.inversion.train_over_generated is None and s.inversion.test_over_generated is not None
    else:  # no held-out images: sigma fixed; OOD sets against training images only
        assert s.sigma.chosen == FIXED_SIGMA and not s.sigma.candidates
        assert some.auroc_inversion is None and some.likelihood_vs_train is not None
        assert s.inversion.train_over_generated is not None and s.inversion.test_over_generated is None
    assert some.typicality_rejection is None  # the OOD test did not run


def test_invert_without_a_training_set_stays_a_one_line_error(tmp_path, capsys):
    argv = ["invert", _spec(), "--latent-shape", "100,1,1", "--split", "train", "--n", "2", "--steps", "1",
            "--restarts", "1", "--out", str(tmp_path / "x.safetensors")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("statgan: error: ") and "--train SET" in err and err.count("\n") == 1, err


def test_missing_reason_names_the_sets_and_their_flags():
    assert missing_reason(["train"]) == "no training images (give --train SET)"
    assert missing_reason(["test", "train"]) == "no training or test images (give --train SET and --test SET)"
    assert missing_reason([]) == "" and "not run" in verdicts.VERDICTS
