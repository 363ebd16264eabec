"""The stages of an audit, each a function of the earlier ones' results.

:func:`statgan.audit.run.audit_run` calls them in order:

    image_sets -> invert_sets -> choose_sigma -> likelihoods -> bdmc_bounds -> (local variance)
    -> typicality_tests, set_summaries, ood_scores, memorisation, correlations, inversion_ratios
    -> statgan.audit.verdicts.findings

Stages that produce per-image tensors return in-memory dataclasses (:class:`ImageSets`,
:class:`Likelihoods`, :class:`BDMCBounds`, :class:`TypicalityTests`); the others return the pieces
of :class:`statgan.audit.summary.AuditSummary` directly. Every sampler is seeded by (the settings'
seed, its purpose), so a stage's numbers do not depend on which stages ran before it. The four
expensive stages (inversion, sigma, AIS, BDMC) work in fixed blocks of images, each with its own
seed (:mod:`statgan.audit.sharding`), so that under ``torchrun`` they are spread over the
processes and the numbers are the same whatever their number.

A generator from elsewhere may come without training or test images (:attr:`RunData.has_train`,
:attr:`RunData.has_test`): the stages then work on the sets there are -- the generated set, the
OOD sets and the model samples always exist -- and what needs a missing set is ``None`` or absent
(:class:`~statgan.audit.summary.AuditSummary` lists which), never computed from a stand-in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import StatganError
from ..runtime.lazy import scipy_stats
from ..runtime.seeding import derived_seed
from .ais import AISResult, BDMCResult, SamplerOptions, ais, bdmc, bits_per_dim, select_sigma, sigma_curve
from .inversion import InversionResult, invert
from .memorisation import data_copying_test
from .posterior import LaplaceMixture, LaplaceOptions, laplace_proposal
from .proposal import IsotropicGaussian, Proposal
from .rundata import FeatureLoss, RunData
from .sharding import Block, block_seed, cat_bdmc, cat_inversions, make_blocks, run_blocks, to_cpu
from .settings import PROPOSALS, AuditSettings, InvertSettings
from .summary import (
    OPTIONAL_SETS,
    BDMCSummary,
    Correlations,
    InversionRatios,
    Memorisation,
    OODScores,
    RejectionCount,
    SetCorrelation,
    SetSummary,
    ShiftTest,
    SigmaChoice,
    SigmaMargin,
    Stats,
    missing_reason,
    TypicalityGroup,
    TypicalitySummary,
    TypicalityTestSummary,
    median,
)
from .typicality import TypicalityResult, rejection_null, typicality_test
from .uncertainty import (
    auroc_ci,
    binomial_ci,
    median_ci,
    ratio_of_medians_ci,
    shift_test,
    spearman_ci,
    spearman_envelope,
    stratified_spearman,
)

__all__ = [
    "BDMCBounds", "FIXED_SIGMA", "ImageSets", "Likelihoods", "Progress", "SetTypicality", "TypicalityTests", "bdmc_bounds",
    "choose_sigma", "correlations", "errors", "image_sets", "invert_images", "invert_sets", "inversion_ratios",
    "likelihoods", "memorisation", "missing_sets", "ood_scores", "set_summaries", "set_typicality", "typicality_batch",
    "typicality_tests",
]

#: images per chunk in inversion and AIS (memory: a chunk's generator activations x restarts/chains)
BATCH = 128
#: images per chunk of the Laplace proposal (memory: restarts x D x d float64 Jacobians per image)
LAPLACE_BATCH = 32
#: training images the data-copying test measures distances to (a seeded subset of larger splits)
COPYING_TRAIN = 10000
#: sigma without held-out images to choose it on and no --sigma: the audit's usual choice on
#: [-1, 1] pixels (the default MNIST run chose it), so the numbers stay comparable with other audits
FIXED_SIGMA = 0.1

#: a stage's progress callback: called with the number of images (or units) just finished
Progress = Optional[Callable[[int], None]]


# ==== image sets ====================================================================================
@dataclass
class ImageSets:
    """The images of one audit (CPU, float32). ``valid`` chooses sigma and joins the OOD test's
    permutation pool. ``train`` is ``None`` without training images, ``test`` and ``valid`` without
    test images (a generator from elsewhere has only the sets it is given)."""

    train: Optional[Tensor]
    test: Optional[Tensor]
    valid: Optional[Tensor]
    generated: Tensor
    ood: Dict[str, Tensor]

    @property
    def scored(self) -> Dict[str, Tensor]:
        """The sets of the tables and plots: train, test, generated, then the OOD sets (those there are)."""
        ind = {"train": self.train, "test": self.test, "generated": self.generated}
        return {**{k: v for k, v in ind.items() if v is not None}, **self.ood}

    @property
    def inverted(self) -> Dict[str, Tensor]:
        """Every set the audit inverts and scores: :attr:`scored`, then ``valid`` if there is one."""
        return {**self.scored, **({"valid": self.valid} if self.valid is not None else {})}

    @property
    def ood_names(self) -> List[str]:
        return list(self.ood)


def missing_sets(run: RunData) -> Dict[str, str]:
    """The sets ``run`` has no images of (``"train"``, ``"test"``), each with why and the flag that
    gives it; empty for a statgan run or when both were given."""
    has = {"train": run.has_train, "test": run.has_test}
    return {k: f"no {words} (give {flag}: a folder, an .npz file or data:NAME:SPLIT)"
            for k, (words, flag) in OPTIONAL_SETS.items() if not has[k]}


def image_sets(run: RunData, s: AuditSettings) -> ImageSets:
    """The audit's image sets, each at most as large as asked (a small dataset gives smaller sets:
    :meth:`RunData.test_and_valid` splits a small test split between ``test`` and ``valid``); no
    ``train`` / ``test`` and ``valid`` where the run has no such images."""
    test, valid = run.test_and_valid(s.n, s.n_valid) if run.has_test else (None, None)
    assert valid is not None or not run.has_test  # n_valid >= 2 (validated)
    sets = ImageSets(train=run.train(s.n) if run.has_train else None, test=test, valid=valid,
                     generated=run.generated(s.n)[0], ood=run.ood(s.n_ood, s.ood))
    if not sets.ood:
        raise StatganError("no OOD set could be built; pass --ood with set names")
    return sets


def typicality_batch(sets: ImageSets, s: AuditSettings) -> int:
    """M: the settings' typicality batch, or the smallest tested set's size when that is smaller (a
    batch needs M images of every tested set; M = 1 is the single-input test)."""
    smallest = min([x.shape[0] for x in sets.scored.values()] + [s.bdmc_images // 2])
    return max(1, min(s.typicality_batch, smallest))


# ==== inversion =====================================================================================
def _invert_block(run: RunData, x: Tensor, s: InvertSettings, feature: FeatureLoss, b: Block) -> InversionResult:
    """Block ``b`` of ``x`` inverted with the block's seed (on the CPU, ready to be gathered)."""
    return to_cpu(invert(run.G, x[b.rows].to(run.device), run.latent_dim, restarts=s.restarts, steps=s.steps, lr=s.lr,
                         loss=feature[0], feature_fn=feature[1], screen=s.screen,
                         refine=s.refine if feature[0] == "l2" else 0, batch_size=BATCH, seed=b.seed))


def _invert_seeds(s: InvertSettings, purpose: str) -> Callable[[int], int]:
    return lambda i: block_seed(s.seed, f"audit:invert:{purpose}", i)


def invert_images(run: RunData, x: Tensor, s: InvertSettings, purpose: str, feature: FeatureLoss, *,
                  first_block: int = 0) -> InversionResult:
    """Invert the run's generator at ``x`` with the settings' knobs, block by block
    (:mod:`statgan.audit.sharding`: block ``i`` seeded by ``purpose`` and ``first_block + i``, and
    spread over the processes of torchrun); CPU tensors. ``first_block``: the number of ``x``'s
    first block in a larger set (so a block inverted alone gets the numbers it gets in the set)."""
    blocks = make_blocks(x.shape[0], _invert_seeds(s, purpose), purpose, first=first_block)
    return cat_inversions(run_blocks(blocks, lambda b: _invert_block(run, x, s, feature, b)))


def invert_sets(run: RunData, sets: ImageSets, s: AuditSettings, feature: FeatureLoss,
                progress: Progress = None) -> Dict[str, InversionResult]:
    """Every set inverted, keyed by name (the scored sets, then ``valid``), each as
    :func:`invert_images` inverts it; the blocks of all sets are spread over the processes together
    (a small set is a single block). ``progress`` gets the images as their blocks finish."""
    images = sets.inverted
    blocks = [b for name, x in images.items() for b in make_blocks(x.shape[0], _invert_seeds(s, name), name)]
    parts = run_blocks(blocks, lambda b: _invert_block(run, images[b.key], s, feature, b), progress)
    return {name: cat_inversions([r for b, r in zip(blocks, parts) if b.key == name]) for name in images}


# ==== proposals, sigma, AIS, BDMC ===================================================================
def sampler_options(s: AuditSettings, n_steps: Optional[int] = None) -> SamplerOptions:
    """The likelihood sampler's options from the audit's settings (``n_steps``: another length, e.g. sigma's)."""
    return SamplerOptions(n_steps=s.ais_steps if n_steps is None else n_steps, n_chains=s.chains, leapfrog=s.leapfrog,
                          step_size=s.step_size, precondition=s.precondition and s.proposal != "prior", batch_size=BATCH)


def _isotropic(run: RunData, x: Tensor, inv: InversionResult, sigma: float, s: AuditSettings) -> Proposal:
    return IsotropicGaussian(inv.z.detach().to(run.device), s.init_scale)


def _laplace(run: RunData, x: Tensor, inv: InversionResult, sigma: float, s: AuditSettings) -> Proposal:
    assert inv.restart_z is not None  # statgan.audit.invert always fills it
    options = LaplaceOptions(jacobians=s.posterior_jacobians, newton_steps=s.posterior_steps,
                             adam_steps=s.posterior_adam_steps, sigma_from=s.posterior_sigma_from, weights=s.mode_weights,
                             max_scale=s.init_scale)
    return laplace_proposal(run.G, x.to(run.device), inv.restart_z.to(run.device), sigma, options,
                            batch_size=LAPLACE_BATCH)


def _prior(run: RunData, x: Tensor, inv: InversionResult, sigma: float, s: AuditSettings) -> None:
    """No proposal: the chains start from the prior (the noise-level path)."""
    return None


#: AIS's initial distribution by ``AuditSettings.proposal``: (run, images, their inversion, sigma,
#: settings) -> a normalised q(z | x) over the images, or None for the prior.
PROPOSAL_BUILDERS: Dict[str, Callable[[RunData, Tensor, InversionResult, float, AuditSettings], Optional[Proposal]]] = {
    "laplace": _laplace, "isotropic": _isotropic, "prior": _prior}
assert tuple(PROPOSAL_BUILDERS) == PROPOSALS, "settings.PROPOSALS names the builders"


def proposal(run: RunData, x: Tensor, inv: InversionResult, sigma: float, s: AuditSettings) -> Optional[Proposal]:
    """The settings' proposal q(z | x) for images ``x`` from their inversion ``inv`` (None: the prior)."""
    return PROPOSAL_BUILDERS[s.proposal](run, x, inv, sigma, s)


def _rows(inv: InversionResult, rows: slice) -> InversionResult:
    """The inversion of the images ``rows`` selects."""
    return replace(inv, **{f: getattr(inv, f)[rows] for f in ("z", "errors", "objective", "mse", "restart_objectives",
                                                               "reconstructions", "restart_z")
                           if getattr(inv, f) is not None})


def choose_sigma(run: RunData, valid: Optional[Tensor], inv_valid: Optional[InversionResult],
                 s: AuditSettings) -> SigmaChoice:
    """The settings' sigma, or the candidate with the highest mean AIS log-likelihood of the first
    ``sigma_images`` valid images (chains started from the settings' proposal at each candidate);
    without valid images (no test images) :data:`FIXED_SIGMA`, saying so -- choosing it on the
    generator's own samples would favour the noise the model already fits best.

    The images go in blocks (:mod:`statgan.audit.sharding`), each (block, candidate) pair one
    :func:`select_sigma` call with the block's seed -- every candidate of a block gets the same seed,
    the common random numbers of :func:`select_sigma` -- spread over the processes of torchrun; the
    per-image values are joined per candidate and the mean over images chooses, as in :func:`select_sigma`."""
    if s.sigma is not None:
        return SigmaChoice(chosen=float(s.sigma), method="given (--sigma)")
    if valid is None or inv_valid is None:
        return SigmaChoice(chosen=FIXED_SIGMA, method=f"fixed at {FIXED_SIGMA:g}: no held-out images to choose it "
                                                      "(give --sigma or --test)")
    k = min(s.sigma_images, valid.shape[0])
    cands = [float(c) for c in s.sigma_candidates]
    options = sampler_options(s, s.sigma_steps)

    def one(b: Block) -> Tensor:
        xb, ib = valid[b.rows].to(run.device), _rows(inv_valid, b.rows)
        c = cands[int(b.key)]
        sel = select_sigma(run.G, xb, run.latent_dim, [c], options, proposal=lambda sg: proposal(run, xb, ib, sg, s),
                           seed=b.seed)
        return sel.log_likelihood[0].detach().cpu()

    blocks = make_blocks(k, lambda i: block_seed(s.seed, "audit:sigma", i))
    if s.proposal == "prior":  # one run along the noise level gives every candidate (sigma_curve)
        lls = _sigma_curve_blocks(run, valid, blocks, cands, options)
        how = f"max mean log-likelihood of {k} valid images, every candidate from one run along the noise level"
    else:
        units = [replace(b, key=str(j)) for b in blocks for j in range(len(cands))]
        parts = run_blocks(units, one)
        lls = torch.stack([torch.cat([p for u, p in zip(units, parts) if u.key == str(j)]) for j in range(len(cands))])
        how = f"max mean AIS log-likelihood of {k} valid images"
    candidates = torch.tensor(cands, dtype=torch.float64)
    means = lls.mean(1)
    chosen = cands[int(torch.argmax(means))]
    return SigmaChoice(chosen=chosen, method=how,
                       candidates=tuple(cands), mean_log_likelihood=tuple(float(v) for v in means),
                       ais_steps=s.sigma_steps, margins=sigma_margins(candidates, lls, chosen))


def _sigma_curve_blocks(run: RunData, valid: Tensor, blocks: Sequence[Block], cands: Sequence[float],
                       options: SamplerOptions) -> Tensor:
    """(candidates, images) lower bounds of log p_sigma(x) for the prior path: per block one
    :func:`statgan.audit.ais.sigma_curve` run down to the smallest candidate (its schedule holds every
    candidate's beta), in the candidates' order."""

    def one(b: Block) -> Tensor:
        curve = sigma_curve(run.G, valid[b.rows].to(run.device), run.latent_dim, cands, options, seed=b.seed)
        order = [int(torch.argmin((curve.sigmas - c).abs())) for c in cands]
        return curve.log_likelihood[order].detach().cpu()

    return torch.cat(run_blocks(list(blocks), one), 1)


def sigma_margins(candidates: Tensor, lls: Tensor, chosen: float) -> Tuple[SigmaMargin, ...]:
    """The chosen sigma's per-image lower bounds minus each other candidate's (``lls``: candidates x
    images): median and its distribution-free 95 % interval (how sure the argmax is)."""
    best = int(torch.argmin((candidates.double() - chosen).abs()))
    out = []
    for i, c in enumerate(candidates.tolist()):
        if i != best:
            med, lo, hi = median_ci(lls[best].double() - lls[i].double())
            out.append(SigmaMargin(candidate=float(c), median=med, lo=lo, hi=hi, n=int(lls.shape[1])))
    return tuple(out)


def _n_modes(q: Optional[Proposal], n: int) -> Tensor:
    """Distinct posterior modes per image in q (1 for a single Gaussian)."""
    return q.n_modes.cpu() if isinstance(q, LaplaceMixture) else torch.ones(n, dtype=torch.long)


def _importance_sampling(run: RunData, x: Tensor, q: Optional[Proposal], sigma: float, s: AuditSettings, purpose: str,
                         block: int = 0) -> AISResult:
    """Plain importance sampling from q (AIS with one step: no transition), ``is_samples`` draws per
    image; ``x`` is block ``block`` of the set ``purpose`` names (its seed)."""
    return ais(run.G, x, run.latent_dim, sigma, SamplerOptions(n_steps=1, n_chains=s.is_samples, leapfrog=1, batch_size=BATCH),
               proposal=q, seed=block_seed(s.seed, f"audit:is:{purpose}", block))


@dataclass
class Likelihoods:
    """Per set (CPU tensors): AIS log-likelihoods (nats) and the mean HMC acceptance rate; importance
    sampling from the same proposal (log p^ and ESS per image); distinct modes of the proposal."""

    log_likelihood: Dict[str, Tensor]
    acceptance: Dict[str, float]
    is_log_likelihood: Dict[str, Tensor]
    is_ess: Dict[str, Tensor]
    n_modes: Dict[str, Tensor]


def likelihoods(run: RunData, images: Dict[str, Tensor], inversions: Dict[str, InversionResult], sigma: float,
                s: AuditSettings, progress: Progress = None) -> Likelihoods:
    """AIS log-likelihood of every image, each image's chains started from its proposal (built from its
    inversion), and importance sampling from the same proposal; ``progress`` gets the images as
    their blocks finish.

    Block by block (:mod:`statgan.audit.sharding`): block ``i`` of set NAME builds its proposal from
    its own inversion and runs AIS and importance sampling with the seeds of ``audit:ais:NAME`` and
    ``audit:is:NAME`` for block ``i``; the blocks of all sets are spread over the processes together."""

    def one(b: Block) -> Tuple[Tensor, ...]:
        x = images[b.key][b.rows].to(run.device)
        q = proposal(run, x, _rows(inversions[b.key], b.rows), sigma, s)
        res = ais(run.G, x, run.latent_dim, sigma, sampler_options(s), proposal=q, seed=b.seed)
        imp = _importance_sampling(run, x, q, sigma, s, b.key, b.index)
        return to_cpu((res.log_likelihood, res.acceptance, imp.log_likelihood, imp.ess, _n_modes(q, b.size)))

    blocks = [b for name, x in images.items()
              for b in make_blocks(x.shape[0], lambda i, name=name: block_seed(s.seed, f"audit:ais:{name}", i), name)]
    parts = run_blocks(blocks, one, progress)
    out = Likelihoods({}, {}, {}, {}, {})
    for name in images:
        ll, acc, is_ll, is_ess, modes = (torch.cat(v) for v in zip(*[p for b, p in zip(blocks, parts) if b.key == name]))
        out.log_likelihood[name], out.acceptance[name] = ll, float(acc.mean())
        out.is_log_likelihood[name], out.is_ess[name], out.n_modes[name] = is_ll, is_ess, modes
    return out


@dataclass
class BDMCBounds:
    """BDMC on model samples x = G(z) + sigma eps with the audit's own estimator: ``lower`` (forward
    AIS from the proposal -- also the model samples' log-likelihoods) and ``upper`` (reverse AIS from
    the exact z back to the same proposal), CPU float64; importance sampling from that proposal."""

    lower: Tensor
    upper: Tensor
    result: BDMCResult
    is_lower: Tensor
    is_ess: Tensor
    n_modes: Tensor
    proposal: str

    @property
    def gaps(self) -> Tensor:
        """Per image, upper - lower bound (nats)."""
        return (self.upper - self.lower).double()

    def summary(self) -> BDMCSummary:
        return BDMCSummary(n_images=int(self.lower.numel()), lower=Stats.of(self.lower), upper=Stats.of(self.upper),
                           gap=Stats.of(self.gaps), gaps=tuple(self.gaps.tolist()), proposal=self.proposal,
                           lower_importance_sampling=Stats.of(self.is_lower), importance_ess=Stats.of(self.is_ess),
                           proposal_modes=Stats.of(self.n_modes))


def bdmc_bounds(run: RunData, sigma: float, s: AuditSettings) -> BDMCBounds:
    """Bidirectional Monte Carlo on ``bdmc_images`` simulated images with the audit's AIS settings and
    proposal (built from the simulated images' own inversion, as for real images), so the gap
    certifies exactly the estimator used on real images.

    Block by block (:mod:`statgan.audit.sharding`): block ``i`` is one :func:`bdmc` call that draws
    its own z and x from the seed of ``audit:bdmc`` block ``i``, inverts its images as block ``i`` of
    ``model-samples`` (so ``invert_images(run, result.data, s, "model-samples", ("l2", None))``
    repeats the proposals' inversion) and samples importance weights from its proposal; the blocks
    are spread over the processes of torchrun and joined (CPU tensors)."""

    def one(b: Block) -> Tuple[BDMCResult, Tensor, Tensor, Tensor]:
        def build(x: Tensor) -> Optional[Proposal]:
            if s.proposal == "prior":  # nothing to search for
                return None
            return proposal(run, x, invert_images(run, x, s, "model-samples", ("l2", None), first_block=b.index), sigma, s)

        res = bdmc(run.G, run.latent_dim, sigma, b.size, sampler_options(s), proposal=build, seed=b.seed)
        imp = _importance_sampling(run, res.data, res.proposal, sigma, s, "model-samples", b.index)
        return to_cpu((res, imp.log_likelihood, imp.ess, _n_modes(res.proposal, b.size)))

    parts = run_blocks(make_blocks(s.bdmc_images, lambda i: block_seed(s.seed, "audit:bdmc", i)), one)
    res = cat_bdmc([p[0] for p in parts])
    return BDMCBounds(lower=res.lower, upper=res.upper, result=res, is_lower=torch.cat([p[1] for p in parts]),
                      is_ess=torch.cat([p[2] for p in parts]), n_modes=torch.cat([p[3] for p in parts]),
                      proposal=s.proposal)


# ==== scores ========================================================================================
@dataclass
class SetTypicality:
    """One set's batches against one typical set: the test, its count's simulated null, and the
    Hodges-Lehmann shift of the set's log-likelihoods over the reference values (H's and the pool's)."""

    result: TypicalityResult
    null: RejectionCount
    shift: ShiftTest

    def summary(self, alpha: float) -> TypicalityTestSummary:
        r = self.result
        return TypicalityTestSummary(
            entropy=r.entropy, epsilon=r.epsilon, n_batches=int(r.statistics.numel()), rejection_rate=r.rejection_rate,
            batch_mean_nll=Stats.of(r.batch_mean_nll), statistic=Stats.of(r.statistics),
            rejected=binomial_ci(int(r.is_ood.sum()), int(r.is_ood.numel()), alpha), calibrated=self.null,
            shift=self.shift)


def set_typicality(h_ll: Tensor, pool_ll: Tensor, set_ll: Tensor, batch_size: int, s: AuditSettings,
                   purpose: str) -> SetTypicality:
    """Batches of ``set_ll`` against the typical set of ``h_ll`` (H^) and ``pool_ll`` (the permutation
    pool), with the count of flags judged against its simulated null
    (:func:`statgan.audit.typicality.rejection_null`, run with the test's own seed, so the count it
    judges is the test's)."""
    kw = dict(alpha=s.alpha, n_bootstrap=s.n_bootstrap, calibration="permutation",
              seed=derived_seed(s.seed, f"audit:typicality:{purpose}"))
    result = typicality_test(h_ll, pool_ll, set_ll, batch_size, **kw)
    null = rejection_null(h_ll, pool_ll, set_ll, batch_size, n_null=s.typicality_null, **kw)
    assert null.k == int(result.is_ood.sum())  # the null's first run is the test above
    return SetTypicality(result, null, shift_test(torch.cat([h_ll, pool_ll]), set_ll))


@dataclass
class TypicalityTests:
    """Typicality tests by tested set: against the model's typical set (H from half of the model
    samples, the other half in the permutation pool) and Nalisnick et al.'s OOD test (H from the
    training images, the valid images in the pool; empty, with ``ood_skipped`` saying why, when
    either is missing); ``batch_size`` is the M that ran."""

    model_sets: Dict[str, SetTypicality]
    ood_sets: Dict[str, SetTypicality]
    model_reference: str
    ood_reference: str
    batch_size: int
    ood_skipped: Optional[str] = None

    @property
    def model(self) -> Dict[str, TypicalityResult]:
        return {k: v.result for k, v in self.model_sets.items()}

    @property
    def ood(self) -> Dict[str, TypicalityResult]:
        return {k: v.result for k, v in self.ood_sets.items()}

    def summary(self, s: AuditSettings) -> TypicalitySummary:
        def group(reference: str, sets: Dict[str, SetTypicality]) -> TypicalityGroup:
            return TypicalityGroup(reference=reference, sets={k: v.summary(s.alpha) for k, v in sets.items()})

        return TypicalitySummary(batch_size=self.batch_size, alpha=s.alpha, n_bootstrap=s.n_bootstrap,
                                 model_typical_set=group(self.model_reference, self.model_sets),
                                 ood_test=group(self.ood_reference, self.ood_sets) if self.ood_skipped is None else None,
                                 calibration="permutation",
                                 batch_size_requested=s.typicality_batch if self.batch_size != s.typicality_batch else None)


def typicality_tests(ll: Dict[str, Tensor], model_ll: Tensor, ood_names: Sequence[str], s: AuditSettings,
                     batch_size: Optional[int] = None) -> TypicalityTests:
    """Train, test and generated images (those in ``ll``) against the model's typical set; test and
    OOD images in the OOD test, which needs training and valid images; batches of ``batch_size``
    (default the settings')."""
    m = batch_size or s.typicality_batch
    half = model_ll.numel() // 2
    model_h, model_pool = model_ll[:half], model_ll[half:]
    lacking = [k for k in ("train", "test") if k not in ll or (k == "test" and "valid" not in ll)]
    # Without training or valid images the OOD test has no reference, so the OOD sets are tested
    # against the model's typical set instead. That is sound: it is the question Nalisnick et al.
    # ask, with the model's own samples where they use training data as a stand-in for them, the
    # same estimator on both sides (how loose the OOD sets' bounds are is unmeasured, as finding
    # (d) says of training images; the shift column shows how far they sit). It is cheap: the tests
    # it replaces cost the same. A full audit keeps the OOD sets out of that group, so its summary
    # is what it was.
    model_names = [k for k in ("train", "test", "generated") if k in ll] + (list(ood_names) if lacking else [])
    return TypicalityTests(
        model_sets={name: set_typicality(model_h, model_pool, ll[name], m, s, "model") for name in model_names},
        ood_sets={} if lacking else {name: set_typicality(ll["train"], ll["valid"], ll[name], m, s, "ood")
                                     for name in ["test", *ood_names]},
        model_reference=f"{half} model samples G(z) + sigma*eps (entropy) + {model_ll.numel() - half} (permutation pool)",
        ood_reference="" if lacking else f"train (entropy) + {ll['valid'].numel()} valid images (permutation pool)",
        batch_size=m, ood_skipped=missing_reason(lacking) or None,
    )


def set_summaries(inversions: Dict[str, InversionResult], lik: Likelihoods, lv: Dict[str, Tensor], model_ll: Tensor,
                  ood_names: Sequence[str], n_dims: int) -> Dict[str, SetSummary]:
    """The per-set table: the scored sets and ``valid`` (in the order of ``inversions``), then the
    model samples."""
    out: Dict[str, SetSummary] = {}
    for name, r in inversions.items():
        ll = lik.log_likelihood[name]
        out[name] = SetSummary(
            n=int(r.errors.numel()),
            kind="ood" if name in ood_names else ("held-out" if name == "valid" else name),
            inversion_error=Stats.of(r.errors), inversion_mse=Stats.of(r.mse), log_likelihood=Stats.of(ll),
            bits_per_dim=Stats.of(bits_per_dim(ll, n_dims)), ais_acceptance=lik.acceptance[name],
            local_variance=Stats.of(lv[name]) if name in lv else None,
            log_likelihood_importance_sampling=Stats.of(lik.is_log_likelihood[name]),
            importance_ess=Stats.of(lik.is_ess[name]), proposal_modes=Stats.of(lik.n_modes[name]))
    out["model_samples"] = SetSummary(n=int(model_ll.numel()), kind="model", log_likelihood=Stats.of(model_ll),
                                      bits_per_dim=Stats.of(bits_per_dim(model_ll, n_dims)))
    return out


def errors(inversions: Dict[str, InversionResult]) -> Dict[str, Tensor]:
    """Per set, the per-image inversion errors (CPU): the score the tests below compare."""
    return {name: r.errors.detach().cpu() for name, r in inversions.items()}


def _auroc(a: Tensor, b: Tensor) -> tuple:
    """(AUROC, (lo, hi)): DeLong 95 %."""
    est, lo, hi = auroc_ci(a, b)
    return est, (lo, hi)


def ood_scores(err: Dict[str, Tensor], ll: Dict[str, Tensor], typ: TypicalityTests,
               ood_names: Sequence[str]) -> Dict[str, OODScores]:
    """AUROCs (DeLong intervals) of each OOD set against test (and train) images, a higher score
    meaning more OOD; the Mann-Whitney test and Hodges-Lehmann shift of its log-likelihoods over the
    training images'. Scores against a set the audit lacks are ``None``; without training and test
    images there are none (an empty dict)."""
    if "train" not in err and "test" not in err:
        return {}
    out = {}
    for name in ood_names:
        kw: Dict[str, Any] = {}
        if "test" in err:
            kw["auroc_inversion"], kw["auroc_inversion_ci"] = _auroc(err["test"], err[name])
            kw["auroc_likelihood"], kw["auroc_likelihood_ci"] = _auroc(-ll["test"], -ll[name])
        if "train" in err:
            kw["auroc_likelihood_vs_train"], kw["auroc_likelihood_vs_train_ci"] = _auroc(-ll["train"], -ll[name])
            kw["median_ll_minus_train"] = median(ll[name]) - median(ll["train"])
            kw["likelihood_vs_train"] = shift_test(ll["train"], ll[name])
        if name in typ.ood_sets:
            kw["typicality_rejection"] = typ.ood[name].rejection_rate
        out[name] = OODScores(**kw)
    return out


def _mann_whitney_p(a: Tensor, b: Tensor) -> float:
    return float(scipy_stats().mannwhitneyu(a.double().numpy(), b.double().numpy(), alternative="two-sided").pvalue)


def memorisation(err: Dict[str, Tensor], ll: Dict[str, Tensor], run: Optional[RunData] = None,
                 sets: Optional[ImageSets] = None, s: Optional[AuditSettings] = None) -> Optional[Memorisation]:
    """Training against held-out test images (would a memorising generator's preference show?), and,
    given the run and its sets, the data-copying test C_T of the generated images against the
    held-out (test + valid) ones relative to (up to :data:`COPYING_TRAIN`) training images. ``None``
    without training or test images: every part compares the two."""
    if "train" not in err or "test" not in err:
        return None
    a_inv, ci_inv = _auroc(err["train"], err["test"])
    a_ll, ci_ll = _auroc(-ll["train"], -ll["test"])
    copying, skipped = None, None
    if run is not None and sets is not None and s is not None and sets.test is not None and sets.valid is not None:
        try:
            copying = data_copying_test(run.train(COPYING_TRAIN), torch.cat([sets.test, sets.valid]), sets.generated,
                                        n_cells=s.copying_cells, seed=derived_seed(s.seed, "audit:copying") % (2**32),
                                        space="pixels")
        except StatganError as exc:  # too few held-out images (a small dataset): the other tests still run
            skipped = str(exc)
    return Memorisation(
        auroc_inversion=a_inv,
        p_inversion=_mann_whitney_p(err["test"], err["train"]),
        auroc_likelihood=a_ll,
        p_likelihood=_mann_whitney_p(ll["test"], ll["train"]),
        mean_ll_gap=float(ll["train"].mean() - ll["test"].mean()),
        median_error_ratio=median(err["test"]) / median(err["train"]),
        auroc_inversion_ci=ci_inv, auroc_likelihood_ci=ci_ll,
        likelihood_shift=shift_test(ll["train"], ll["test"]),
        data_copying=copying, data_copying_skipped=skipped,
    )


def _set_correlation(sets: Sequence[str], ll: Dict[str, Tensor], lv: Dict[str, Tensor]) -> SetCorrelation:
    x = torch.cat([ll[k] for k in sets])
    y = torch.cat([lv[k] for k in sets])
    r = spearman_ci(x, y)
    if r is None:  # fewer than 4 images, or a constant variable
        return SetCorrelation(r=None, pvalue=None, n=int(x.numel()), method="spearman", sets=tuple(sets))
    return SetCorrelation(r=r[0], pvalue=r[1], n=int(x.numel()), method="spearman", sets=tuple(sets), lo=r[2], hi=r[3])


#: the error allowances at which the within-set correlation's envelope is computed, as fractions of
#: the audit's allowance (so a reader sees how small an error would resolve the verdict)
ENVELOPE_FRACTIONS = (0.0, 1 / 1024, 1 / 256, 1 / 64, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def correlations(ll: Dict[str, Tensor], lv: Dict[str, Tensor], ood_names: Sequence[str],
                 allowance: Optional[float] = None) -> Correlations:
    """Spearman correlation of log-likelihood with local variance (95 % Fisher-z intervals): within
    each of train, test and the OOD sets, and combined within sets (``stratified``, what the verdict
    reads). ``pooled`` over all of them is kept for reference only: sets whose means differ make a
    pooled correlation that no set shows (+0.66 pooled vs -0.04 within test on the default run).
    Generated images are left out: noise-free G(z) are not draws from the density model.

    ``allowance`` (nats): how loose the likelihood bounds may be; the combined correlation then
    carries its envelope (:func:`statgan.audit.uncertainty.spearman_envelope`) at
    :data:`ENVELOPE_FRACTIONS` of it. Sets the audit lacks are left out (the OOD sets are always there)."""
    names = [k for k in ("train", "test", *ood_names) if k in ll]
    per_set = {k: _set_correlation([k], ll, lv) for k in names}
    pairs = [(ll[k], lv[k]) for k in names]
    st = stratified_spearman(pairs)
    envelope: Tuple = ()
    if allowance is not None and math.isfinite(allowance):
        envelope = tuple(spearman_envelope(pairs, [f * allowance for f in ENVELOPE_FRACTIONS]))
    stratified = (SetCorrelation(r=st[0], pvalue=st[1], n=st[4], method="spearman, within sets (Fisher z, inverse-variance weights)",
                                 sets=tuple(names), lo=st[2], hi=st[3], envelope=envelope) if st is not None else None)
    return Correlations(pooled=_set_correlation(names, ll, lv), test=per_set.get("test"), per_set=per_set,
                        stratified=stratified)


def inversion_ratios(err: Dict[str, Tensor], seed: int = 0) -> InversionRatios:
    """Median inversion error of train and test images over that of generated images, the former
    with a 95 % percentile-bootstrap interval and the Mann-Whitney p of train vs generated errors
    (``None`` for a set the audit lacks)."""
    gen = median(err["generated"])

    def ratio(name: str) -> Optional[float]:
        if name not in err:
            return None
        return median(err[name]) / gen if gen > 0 else math.inf

    if "train" not in err:
        return InversionRatios(train_over_generated=None, test_over_generated=ratio("test"))
    _, lo, hi = ratio_of_medians_ci(err["train"], err["generated"], seed=seed)
    return InversionRatios(train_over_generated=ratio("train"), test_over_generated=ratio("test"),
                           train_over_generated_ci=(lo, hi), pvalue_train_vs_generated=_mann_whitney_p(err["train"], err["generated"]))


# ==== everything per image ==========================================================================
@dataclass
class PerImage:
    """The stages' per-image results: what the report plots and ``per_image.safetensors`` holds."""

    sets: ImageSets
    inversions: Dict[str, InversionResult]
    likelihoods: Likelihoods
    local_variance: Dict[str, Tensor]
    bdmc: BDMCBounds
    typicality: TypicalityTests

    def tensors(self) -> Dict[str, Tensor]:
        """``SET.errors``, ``SET.mse``, ``SET.log_likelihood`` (AIS), ``SET.log_likelihood_is`` (importance
        sampling), ``SET.proposal_modes``, ``SET.z`` (and ``SET.local_variance``) per inverted set,
        ``model_samples.log_likelihood`` (AIS, BDMC's lower bound), ``model_samples.log_likelihood_is``
        and ``bdmc.upper``."""
        out: Dict[str, Tensor] = {"model_samples.log_likelihood": self.bdmc.lower, "bdmc.upper": self.bdmc.upper,
                                  "model_samples.log_likelihood_is": self.bdmc.is_lower}
        for name, r in self.inversions.items():
            out.update({f"{name}.errors": r.errors, f"{name}.mse": r.mse,
                        f"{name}.log_likelihood": self.likelihoods.log_likelihood[name], f"{name}.z": r.z,
                        f"{name}.log_likelihood_is": self.likelihoods.is_log_likelihood[name],
                        f"{name}.proposal_modes": self.likelihoods.n_modes[name]})
            if name in self.local_variance:
                out[f"{name}.local_variance"] = self.local_variance[name]
        return out
