"""`statgan audit` on a tiny run: the HTML report is self-contained and renders, the summary is
complete and finite, and the verdicts follow the documented thresholds and quote the summary."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import shutil
import subprocess
import traceback
from html.parser import HTMLParser

import pytest
from PIL import Image

from statgan.audit import verdicts
from statgan.audit.summary import AuditSummary, from_json, to_json
from statgan.cli import main
from statgan.errors import StatganError

from conftest import tiny_dcgan_overrides

TINY_AUDIT = ["--quick", "--n", "8", "--n-valid", "8", "--n-ood", "4", "--ood", "glyphs,noise,inverted",
              "--steps", "10", "--ais-steps", "6", "--threads", "1"]


class _Page(HTMLParser):
    """Collects tags, their attributes and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    import torch

    n = torch.get_num_threads()
    root = tmp_path_factory.mktemp("audit")
    try:
        assert main(["train", *tiny_dcgan_overrides(root, **{"train.steps": 8})]) == 0
        assert main(["audit", str(root / "dcgan"), *TINY_AUDIT]) == 0
    finally:
        torch.set_num_threads(n)
    out = root / "dcgan" / "audit"
    return out, from_json((out / "summary.json").read_text()), (out / "report.html").read_text(encoding="utf-8")


def test_report_is_self_contained_html_with_decodable_pngs(audited):
    out, summary, page = audited
    parser = _Page()
    parser.feed(page)
    parser.close()
    tags = [t for t, _ in parser.tags]
    assert tags[0] == "html" and "body" in tags and "script" not in tags and "link" not in tags
    assert "http://" not in page.replace("arXiv", "") and "https://" not in page and "url(" not in page
    imgs = [a for t, a in parser.tags if t == "img"]
    # 4 plots + the sigma plot + one reconstruction grid per set (train, test, generated, 3 OOD)
    assert len(imgs) == 5 + 6
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert im.format == "PNG" and im.size[0] > 20 and im.size[1] > 20
        im.load()  # the whole image decodes
    assert all(not a.get("href", "").startswith("http") for _, a in parser.tags)


def test_summary_has_the_expected_keys_and_finite_numbers(audited):
    out, typed, _ = audited
    s = json.loads((out / "summary.json").read_text())
    assert {"format", "run", "step", "settings", "sigma", "bdmc", "splits", "auroc", "memorisation", "correlation",
            "typicality", "findings", "timing", "machine", "seconds", "paths"} <= s.keys()
    assert s["format"] == "statgan-audit/1" and s["step"] == 8 and s["ood_sets"] == ["glyphs", "noise", "inverted"]
    assert set(s["splits"]) == {"train", "test", "generated", "glyphs", "noise", "inverted", "valid", "model_samples"}
    assert s["splits"]["train"]["n"] == 8 and s["splits"]["glyphs"]["n"] == 4 and s["splits"]["valid"]["n"] == 8
    # sets that are not inverted have no inversion keys (left out, not null)
    assert "inversion_error" not in s["splits"]["model_samples"] and "local_variance" not in s["splits"]["valid"]
    # a typicality group holds its reference beside the tested sets
    assert set(s["typicality"]["ood_test"]) == {"reference", "test", "glyphs", "noise", "inverted"}
    assert typed.typicality.ood_test.sets["glyphs"].n_batches == s["typicality"]["ood_test"]["glyphs"]["n_batches"]

    def numbers(obj, path=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from numbers(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from numbers(v, f"{path}[{i}]")
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            yield path, obj

    core = {k: s[k] for k in ("sigma", "bdmc", "splits", "auroc", "memorisation", "correlation", "typicality")}
    found = list(numbers(core))
    assert len(found) > 200 and all(math.isfinite(v) for _, v in found)
    # None would be a non-finite number turned into JSON null: there must be none in the results
    assert "null" not in json.dumps(core)
    assert s["sigma"]["chosen"] in s["sigma"]["candidates"]
    # BDMC certifies the estimator used on real images: one proposal, its own upper bound (no minimum of two)
    b = s["bdmc"]
    assert b["proposal"] == "laplace" and "upper_prior_path" not in b and "upper_inversion_path" not in b
    assert 1.0 <= b["importance_ess"]["median"] and b["proposal_modes"]["min"] >= 1
    assert s["splits"]["train"]["importance_ess"]["max"] <= s["settings"]["is_samples"] + 1e-9
    for name, row in s["auroc"].items():
        assert 0.0 <= row["auroc_inversion"] <= 1.0 and 0.0 <= row["auroc_likelihood"] <= 1.0
    from safetensors.torch import load_file

    t = load_file(str(out / "per_image.safetensors"))
    assert t["train.log_likelihood"].shape == (8,) and t["glyphs.z"].shape == (4, 8)
    assert float(t["test.errors"].double().quantile(0.5)) == pytest.approx(s["splits"]["test"]["inversion_error"]["median"], rel=1e-6)
    gap = (t["bdmc.upper"] - t["model_samples.log_likelihood"]).double()
    assert float(gap.quantile(0.5)) == pytest.approx(s["bdmc"]["gap"]["median"], rel=1e-6, abs=1e-6)
    assert t["train.log_likelihood_is"].shape == (8,) and t["train.proposal_modes"].min() >= 1


def test_verdict_paragraphs_are_in_the_page_and_quote_the_summary(audited):
    _, s, page = audited
    parser = _Page()
    parser.feed(page)
    text = " ".join(parser.text)
    ids = [f.id for f in s.findings]
    assert ids == ["a", "b", "c", "d", "memorisation"]
    for f in s.findings:
        assert f.verdict in ("holds", "partly holds", "does not hold", "signal", "weak signal", "no signal")
        assert f.text in text and f'id="finding-{f.id}"' in page
    a = s.findings[0]
    assert verdicts._f(s.inversion.train_over_generated) in a.text
    assert verdicts._f(s.splits["train"].inversion_error.median) in a.text
    b = s.findings[1]
    for name, row in s.auroc.items():
        assert f"{name} {verdicts._f(row.auroc_inversion)}" in b.text
    # the verdicts recomputed from the summary read back from JSON are the ones written
    assert verdicts.findings(s) == s.findings


@pytest.mark.parametrize("ratio, verdict", [(12.0, "holds"), (10.0, "holds"), (5.0, "partly holds"), (2.9, "does not hold")])
def test_finding_a_follows_its_thresholds(audited, ratio, verdict):
    s = copy.deepcopy(audited[1])
    s.inversion.train_over_generated = ratio
    f = verdicts.findings(s)[0]
    assert f.verdict == verdict and verdicts._f(ratio) in f.text


def test_findings_b_c_d_and_memorisation_follow_their_thresholds(audited):
    s = copy.deepcopy(audited[1])
    for row in s.auroc.values():
        row.auroc_inversion = 0.55
        row.median_ll_minus_train = -5.0
    s.correlation.pooled.r, s.correlation.pooled.pvalue = -0.5, 1e-6
    s.typicality.model_typical_set.sets["train"].rejection_rate = 0.8
    s.memorisation.auroc_inversion, s.memorisation.p_inversion = 0.7, 1e-4
    got = {f.id: f.verdict for f in verdicts.findings(s)}
    assert got == {"a": got["a"], "b": "holds", "c": "partly holds", "d": "holds", "memorisation": "signal"}
    s.auroc["noise"].auroc_inversion = 0.99
    s.auroc["glyphs"].median_ll_minus_train = 3.0
    s.typicality.model_typical_set.sets["train"].rejection_rate = 0.05
    m = s.memorisation
    m.auroc_inversion, m.p_inversion, m.auroc_likelihood, m.p_likelihood = 0.55, 0.5, 0.52, 0.6
    got = {f.id: f for f in verdicts.findings(s)}
    assert got["b"].verdict == "partly holds" and "noise" in got["b"].text
    assert got["c"].verdict == "holds" and got["c"].numbers["higher_than_train"] == ["glyphs"]
    assert got["d"].verdict == "does not hold"
    assert got["memorisation"].verdict == "no signal"
    for row in s.auroc.values():
        row.auroc_inversion = 0.95
    s.correlation.pooled.r, s.correlation.pooled.pvalue = 0.2, 1e-3
    s.auroc["glyphs"].median_ll_minus_train = -3.0
    got = {f.id: f.verdict for f in verdicts.findings(s)}
    assert got["b"] == "does not hold" and got["c"] == "does not hold"


def test_summary_round_trips_through_json(audited):
    out, s, _ = audited
    text = (out / "summary.json").read_text()
    assert isinstance(s, AuditSummary) and to_json(s) == text  # the file is exactly to_json of the result
    assert from_json(to_json(s)) == s
    changed = copy.deepcopy(s)
    changed.splits["test"].log_likelihood.median += 1.0
    assert from_json(to_json(changed)) == changed != s


def test_a_summary_from_before_the_laplace_proposal_is_still_read(audited):
    """statgan-audit/1 files written before the Laplace proposal: BDMC kept per-path bounds and no
    importance-sampling fields; they read back with those fields set and the new ones None."""
    data = json.loads((audited[0] / "summary.json").read_text())
    b = data["bdmc"]
    for k in ("proposal", "lower_importance_sampling", "importance_ess", "proposal_modes"):
        del b[k]
    b["upper_inversion_path"] = b["lower_prior_path"] = b["upper_prior_path"] = b["upper"]
    for row in data["splits"].values():
        for k in ("log_likelihood_importance_sampling", "importance_ess", "proposal_modes"):
            row.pop(k, None)
    old = from_json(json.dumps(data))
    assert old.bdmc.proposal is None and old.bdmc.upper_prior_path == audited[1].bdmc.upper
    assert old.splits["train"].importance_ess is None and old.splits["train"].log_likelihood == audited[1].splits["train"].log_likelihood
    assert "upper_prior_path" in to_json(old)  # written back as read


def test_a_misspelt_field_fails_at_the_line_that_misspells_it(audited):
    s = audited[1]
    with pytest.raises(AttributeError, match="inversion_eror") as info:
        s.splits["train"].inversion_eror.median  # the misspelling under test
    assert traceback.extract_tb(info.tb)[-1].line.startswith('s.splits["train"].inversion_eror.median')
    with pytest.raises(AttributeError, match="auroc_inversions"):
        s.memorisation.auroc_inversions = 0.7  # slots: a misspelt assignment does not add a field
    # summary.json with a misspelt key is refused, not read with the field missing
    text = (audited[0] / "summary.json").read_text().replace('"mean_ll_gap"', '"mean_ll_gapp"')
    with pytest.raises(StatganError, match="mean_ll_gapp"):
        from_json(text)


def _browser():
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on this machine (docs/audit.md: manual check)")
def test_report_renders_in_a_headless_browser(audited, tmp_path):
    out = audited[0]
    shot = tmp_path / "shot.png"
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,2400",
           f"--screenshot={shot}", (out / "report.html").resolve().as_uri()]
    subprocess.run(cmd, check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    im = Image.open(shot).convert("L")
    assert im.size == (1100, 2400)
    # the page drew something: text and plots make dark pixels on the white page, top to bottom
    top, bottom = im.crop((0, 0, 1100, 300)), im.crop((0, 1200, 1100, 2400))
    assert top.getextrema()[0] < 80 and bottom.getextrema()[0] < 80
    hist = im.histogram()
    assert sum(hist[:200]) > 0.01 * sum(hist)  # not a blank page
