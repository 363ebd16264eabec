"""GAN inversion: for each image x find z* = argmin_z  E(G(z), x) + lambda * ||z||^2 / d.

Friedman & Weiss ("Unmasking the GAN manifold", arXiv 2402.14098) invert by Adam with a cosine
learning-rate schedule and compare inversion errors of training images, generated images and OOD
images. This implementation:

* optimises all images x restarts as one (B * R, d) latent tensor. Adam's update is element-wise,
  so this is exactly R independent optimisations per image, in one generator pass per step;
* uses lr_t = lr * (1 + cos(pi t / steps)) / 2 (cosine annealing to 0, Loshchilov & Hutter 2017);
* keeps, per restart, the best iterate seen (the objective is evaluated at every iterate anyway),
  then the best restart per image;
* losses (per image, all means so that values are comparable across image sizes):
    "l2":          E = mean_j (G(z)_j - x_j)^2                      (per-pixel MSE)
    "feature":     E = mean_k (phi(G(z))_k - phi(x)_k)^2            (phi = ``feature_fn``)
    "l2+feature":  E = l2 + feature_weight * feature
  ``feature_fn`` is any differentiable callable (N, C, H, W) -> (N, F); :func:`lenet_feature_fn`
  builds one from statgan's shipped MNIST LeNet (the "lenet" extractor's 128-d features);
* optional latent-prior penalty lambda * ||z||^2 / d: -log N(z; 0, I) up to a constant, scaled
  by 2 lambda / d; it keeps z in the region the generator was trained on. lambda may change per step
  (a sequence of ``steps`` values), e.g. to anneal the noise level of a posterior objective
  (:mod:`statgan.audit.posterior`); each restart's best iterate is then judged by the last lambda's
  objective, the one the schedule ends at.

* optional screening (``screen=N``): N prior draws per image are scored by one forward pass each and
  the best ``restarts`` become the starts (Friedman & Weiss start from the best of 500 prior
  samples). A GAN's inversion landscape has many basins; which one Adam ends in is decided by
  where it starts, and a forward pass costs about a third of an Adam step;
* optional Levenberg-Marquardt refinement (``refine=K``, pixel loss only) of each image's best
  restart: with J = dG/dz and r = G(z) - x, the step solves
  (J^T J / D + lambda diag(J^T J / D) + (prior_weight / d) I) delta = -(J^T r / D + (prior_weight / d) z),
  the Gauss-Newton step of the objective damped toward (diagonally scaled) gradient descent
  (Levenberg 1944, with Marquardt's 1963 scaling by the diagonal); a step that lowers the objective is kept and lambda x 0.3, otherwise
  lambda x 10. Adam's last steps are slow near a minimum of a near-quadratic residual, where
  Gauss-Newton converges quadratically. J comes from forward mode
  (:func:`statgan.audit._common.jacobian`) and is recomputed only after a kept step.

The generator runs in eval mode with frozen parameters; gradients are taken w.r.t. z only.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..metrics.features import load_lenet, to_gray28
from ..runtime import threads
from ..runtime.seeding import SeedLike, make_rng
from ..runtime.validation import check_int, check_positive
from ._common import check_images, chunks, frozen, generate, jacobian, working_device_dtype

__all__ = ["InversionResult", "invert", "lenet_feature_fn", "LOSSES"]

#: Accepted values of ``invert(loss=...)``.
LOSSES = ("l2", "feature", "l2+feature")

FeatureFn = Callable[[Tensor], Tensor]

#: latents per forward pass when screening prior draws (memory: that many generator activations)
SCREEN_BATCH = 4096
#: images per Jacobian block in the Levenberg-Marquardt refinement (memory: D x d float64 per image)
REFINE_BATCH = 16
#: Levenberg-Marquardt: initial damping, and its factors after a kept and a refused step
LM_DAMPING, LM_DECREASE, LM_INCREASE = 1e-3, 0.3, 10.0



@dataclass
class InversionResult:
    """Output of :func:`invert` for B images; unpacks as ``z, errors = invert(...)``.

    Attributes:
        z: (B, d) latents of the best restart per image.
        errors: (B,) reconstruction error E(G(z), x) of that restart (the chosen ``loss``, without
            the prior penalty).
        objective: (B,) the minimised objective (error + penalty) at z.
        mse: (B,) per-pixel mean squared error mean_j (G(z)_j - x_j)^2, whatever the loss.
        restart_objectives: (B, R) best objective reached by each restart (spread = landscape
            difficulty).
        reconstructions: (B, *data_shape) G(z), detached.
        restart_z: (B, R, d) best iterate of every restart (the candidate posterior modes that
            :func:`statgan.audit.posterior.laplace_proposal` refines and combines).
    """

    z: Tensor
    errors: Tensor
    objective: Tensor
    mse: Tensor
    restart_objectives: Tensor
    reconstructions: Tensor
    restart_z: Optional[Tensor] = None

    def __iter__(self) -> Iterator[Tensor]:
        yield self.z
        yield self.errors


def lenet_feature_fn(device: Union[str, torch.device] = "cpu") -> FeatureFn:
    """Differentiable 128-d penultimate features of statgan's shipped MNIST LeNet.

    Same network and preprocessing as the ``lenet`` feature extractor of
    :mod:`statgan.metrics.features` (3 channels -> channel mean; other sizes -> antialiased
    bilinear resize to 28 x 28), but without its ``inference_mode``, so gradients reach the input.
    The returned callable has ``.model`` and ``.id`` attributes.
    """
    model, digest = load_lenet(device=device)

    def features(x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"lenet features expect images (N, 1 or 3, H, W), got {tuple(x.shape)}")
        return model.features(to_gray28(x, "lenet").to(next(model.parameters()).dtype))

    features.model = model  # type: ignore[attr-defined]
    features.id = f"lenet-{digest[:8]}"  # type: ignore[attr-defined]
    return features


def _check_features(f: Any, n: int) -> Tensor:
    if not torch.is_tensor(f) or f.dim() != 2 or f.shape[0] != n:
        got = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
        raise ValueError(f"feature_fn must map N images to an (N, F) tensor, got {got} for N = {n}")
    return f


def _prior_weights(prior_weight: Union[float, Sequence[float]], steps: int) -> List[float]:
    """The penalty's lambda per step (at least one value: the last one judges the iterates)."""
    if isinstance(prior_weight, (int, float)) and not isinstance(prior_weight, bool):
        return [check_positive("prior_weight", prior_weight, allow_zero=True)] * max(steps, 1)
    try:
        weights = [float(w) for w in prior_weight]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"prior_weight must be a number >= 0 or a sequence of {steps} of them, got {prior_weight!r}") from None
    if len(weights) != steps or steps == 0:
        raise ValueError(f"prior_weight as a schedule must hold one value per step ({steps}), got {len(weights)}")
    for w in weights:
        check_positive("prior_weight", w, allow_zero=True)
    return weights


def _objective(
    generator: nn.Module, z: Tensor, x3: Tensor, fx: Optional[Tensor], data_shape: Tuple[int, ...],
    loss: str, feature_fn: Optional[FeatureFn], feature_weight: float, prior_weight: float,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(objective, error, mse, G(z)) for z (B, R, d); the first three are (B, R)."""
    B, R, d = z.shape
    out = generate(generator, z.reshape(B * R, d), data_shape)
    mse = (out.reshape(B, R, -1) - x3).square().mean(-1)
    if loss == "l2":
        err = mse
    else:
        f = _check_features(feature_fn(out), B * R).reshape(B, R, -1)  # type: ignore[misc]
        feat = (f - fx).square().mean(-1)
        err = feat if loss == "feature" else mse + feature_weight * feat
    obj = err + (prior_weight / d) * z.square().sum(-1) if prior_weight > 0 else err
    return obj, err, mse, out


class _Settings(NamedTuple):
    """The checked arguments of :func:`invert` that every chunk of images shares."""

    loss: str
    feature_fn: Optional[FeatureFn]
    feature_weight: float
    weights: List[float]  # lambda per Adam step
    prior_weight: float  # the last lambda: the objective iterates are judged by (and reported)
    lr: float
    betas: Tuple[float, float]
    steps: int
    restarts: int
    screen: int
    refine: int

    @property
    def objective_args(self) -> tuple:
        """The trailing arguments of :func:`_objective`."""
        return (self.loss, self.feature_fn, self.feature_weight, self.prior_weight)


def invert(
    generator: nn.Module,
    x: Tensor,
    latent_dim: int,
    restarts: int = 4,
    steps: int = 500,
    *,
    lr: float = 0.05,
    loss: str = "l2",
    feature_fn: Optional[FeatureFn] = None,
    feature_weight: float = 1.0,
    prior_weight: Union[float, Sequence[float]] = 0.0,
    betas: Tuple[float, float] = (0.9, 0.999),
    init: Optional[Tensor] = None,
    screen: int = 0,
    refine: int = 0,
    batch_size: Optional[int] = None,
    seed: SeedLike = None,
) -> InversionResult:
    """Invert ``generator`` at each image of ``x``: Adam + cosine LR, ``restarts`` starts per image.

    Args:
        generator: module mapping (N, latent_dim) to (N, *x.shape[1:]).
        x: (B, ...) target images, in the generator's output range.
        latent_dim: d.
        restarts: R random starts z ~ N(0, I) per image; the best (lowest objective) is kept.
        steps: Adam steps per restart.
        lr: peak learning rate (cosine-annealed to 0 over ``steps``).
        loss: "l2", "feature" or "l2+feature" (module docstring); the feature losses need
            ``feature_fn`` (e.g. :func:`lenet_feature_fn` for MNIST-like data).
        feature_weight: weight of the feature term in "l2+feature".
        prior_weight: lambda of the penalty lambda * ||z||^2 / d (0 = off), or one lambda per step
            (``steps`` values >= 0); the best iterate is chosen under the last one.
        betas: Adam's betas.
        init: optional (B, R, d) starting latents (``restarts`` is then R); default z ~ N(0, I).
        screen: N > 0 scores N prior draws per image by one forward pass each and starts Adam from
            the best ``restarts`` of them (0: the restarts are prior draws); not with ``init``.
        refine: Levenberg-Marquardt steps on each image's best restart after Adam (pixel loss only).
        batch_size: images per chunk (memory: batch_size * restarts generator activations).
        seed: int, torch.Generator or None (drawn from the global RNG).

    Returns an :class:`InversionResult` (``z, errors = invert(...)`` works).
    """
    x = check_images("x", x)
    latent_dim = check_int("latent_dim", latent_dim)
    settings = _check_settings(restarts, steps, lr, loss, feature_fn, feature_weight, prior_weight, betas,
                               init is not None, screen, refine)
    device, dtype = working_device_dtype(generator, x.device, x.dtype)
    x = x.to(device=device, dtype=dtype)
    if init is not None:
        if not torch.is_tensor(init) or init.dim() != 3 or tuple(init.shape[::2]) != (x.shape[0], latent_dim):
            got = tuple(init.shape) if torch.is_tensor(init) else type(init).__name__
            raise ValueError(f"init must be a tensor of shape (B, restarts, latent_dim) = ({x.shape[0]}, R, {latent_dim}), got {got}")
        init = init.detach().to(device=device, dtype=dtype)
        settings = settings._replace(restarts=init.shape[1])
    data_shape = tuple(x.shape[1:])
    rng = make_rng(seed, device)
    B = x.shape[0]
    parts: List[Tuple[Tensor, ...]] = []
    with ExitStack() as stack:
        stack.enter_context(frozen(generator))
        if isinstance(feature_fn, nn.Module):
            stack.enter_context(frozen(feature_fn))
        for sl in chunks(B, batch_size):
            xb = x[sl]
            b = xb.shape[0]
            x3 = xb.reshape(b, 1, -1)
            fx = None
            if settings.loss != "l2":
                with torch.no_grad():
                    fx = _check_features(feature_fn(xb), b).reshape(b, 1, -1)  # type: ignore[misc]
            if init is not None:
                z = init[sl].clone()
            elif settings.screen:
                z = _screen(generator, x3, fx, data_shape, settings.objective_args, latent_dim, settings.screen,
                            settings.restarts, rng)
            else:
                z = torch.randn(b, settings.restarts, latent_dim, generator=rng, device=device, dtype=dtype)
            best_obj, best_z = _descend(generator, z, x3, fx, data_shape, settings)
            parts.append(_best_restart(generator, best_obj, best_z, xb, x3, fx, data_shape, settings))
    cat = [torch.cat([p[i] for p in parts]) for i in range(7)]
    return InversionResult(z=cat[0], errors=cat[1], objective=cat[2], mse=cat[3], restart_objectives=cat[4],
                           reconstructions=cat[5].reshape(B, *data_shape), restart_z=cat[6])


def _check_settings(restarts: int, steps: int, lr: float, loss: str, feature_fn: Optional[FeatureFn],
                    feature_weight: float, prior_weight: Union[float, Sequence[float]], betas: Tuple[float, float],
                    has_init: bool, screen: int, refine: int) -> _Settings:
    """:func:`invert`'s arguments checked (one-line errors naming the value) and gathered."""
    restarts = check_int("restarts", restarts)
    steps = check_int("steps", steps, minimum=0)
    screen = check_int("screen", screen, minimum=0)
    refine = check_int("refine", refine, minimum=0)
    if refine and loss != "l2":
        raise ValueError(f"refine (Levenberg-Marquardt) needs the pixel loss 'l2', got loss={loss!r}")
    if screen and has_init:
        raise ValueError("pass init (the starts themselves) or screen (the best of prior draws), not both")
    if screen and screen < restarts:
        raise ValueError(f"screen must draw at least as many prior samples as restarts ({restarts}), got {screen}")
    lr = check_positive("lr", lr)
    feature_weight = check_positive("feature_weight", feature_weight, allow_zero=True)
    weights = _prior_weights(prior_weight, steps)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if loss != "l2" and not callable(feature_fn):
        raise ValueError(f"loss={loss!r} needs feature_fn, a callable mapping (N, C, H, W) images to (N, F) features; got {feature_fn!r}")
    return _Settings(loss, feature_fn, feature_weight, weights, weights[-1], lr, tuple(betas), steps, restarts,
                     screen, refine)


def _descend(generator: nn.Module, z: Tensor, x3: Tensor, fx: Optional[Tensor], data_shape: Tuple[int, ...],
             s: _Settings) -> Tuple[Tensor, Tensor]:
    """Adam with the cosine schedule from the starts ``z`` (b, R, d); returns each restart's best
    objective (b, R) and the iterate that reached it (b, R, d) -- every iterate is scored anyway."""
    b, R, d = z.shape
    # lr_t for t = 0 .. steps-1 (python floats: setting them costs no device sync)
    lrs = [s.lr * 0.5 * (1.0 + math.cos(math.pi * t / s.steps)) for t in range(s.steps)]
    scheduled = any(w != s.prior_weight for w in s.weights)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=s.lr, betas=s.betas)
    best_obj = torch.full((b, R), math.inf, device=z.device, dtype=z.dtype)
    best_z = z.detach().clone()
    threads.loop_start("invert")  # a command's thread tuner, if any, times each step
    for t in range(s.steps + 1):
        with torch.set_grad_enabled(t < s.steps):
            obj, err, _, _ = _objective(generator, z, x3, fx, data_shape, *s.objective_args)
            if t < s.steps:
                if scheduled:  # step t descends err + lambda_t |z|^2 / d
                    obj_t = err + (s.weights[t] / d) * z.square().sum(-1)
                    (g,) = torch.autograd.grad(obj_t.sum(), z)
                else:
                    (g,) = torch.autograd.grad(obj.sum(), z)
        with torch.no_grad():
            # keep each restart's best iterate (obj is at the current z, before the update)
            better = obj.detach() < best_obj
            best_obj = torch.where(better, obj.detach(), best_obj)
            best_z = torch.where(better.unsqueeze(-1), z.detach(), best_z)
        if t == s.steps:
            break
        z.grad = g
        opt.param_groups[0]["lr"] = lrs[t]
        opt.step()
        threads.loop_tick()
    return best_obj, best_z


def _best_restart(generator: nn.Module, best_obj: Tensor, best_z: Tensor, xb: Tensor, x3: Tensor,
                  fx: Optional[Tensor], data_shape: Tuple[int, ...], s: _Settings) -> Tuple[Tensor, ...]:
    """The best restart per image, refined by Levenberg-Marquardt if asked (it stays that restart's
    best iterate), with its error terms and reconstruction recomputed in one forward pass:
    (z, error, objective, mse, restart objectives, G(z), restart latents)."""
    b = best_z.shape[0]
    idx = best_obj.argmin(1)
    rows = torch.arange(b, device=best_z.device)
    zb = best_z[rows, idx].unsqueeze(1)
    if s.refine:  # Gauss-Newton from the best restart
        zb = _levenberg_marquardt(generator, zb.squeeze(1), xb, s.prior_weight, s.refine).unsqueeze(1)
        best_z[rows, idx] = zb.squeeze(1)
    with torch.no_grad():
        obj, err, mse, out = _objective(generator, zb, x3, fx, data_shape, *s.objective_args)
    if s.refine:
        best_obj[rows, idx] = obj.squeeze(1)
    return zb.squeeze(1), err.squeeze(1), obj.squeeze(1), mse.squeeze(1), best_obj, out, best_z


def _screen(generator: nn.Module, x3: Tensor, fx: Optional[Tensor], data_shape: Tuple[int, ...], args: tuple,
            d: int, n: int, keep: int, rng: torch.Generator) -> Tensor:
    """(b, keep, d): the ``keep`` best of ``n`` prior draws per image under the inversion objective
    (forward passes only, :data:`SCREEN_BATCH` latents at a time)."""
    b = x3.shape[0]
    cand = torch.randn(b, n, d, generator=rng, device=x3.device, dtype=x3.dtype)
    per = max(1, SCREEN_BATCH // b)
    scores = []
    with torch.no_grad():
        for i in range(0, n, per):
            scores.append(_objective(generator, cand[:, i:i + per], x3, fx, data_shape, *args)[0])
    best = torch.cat(scores, 1).topk(keep, 1, largest=False).indices
    return torch.gather(cand, 1, best.unsqueeze(-1).expand(-1, -1, d))


def _levenberg_marquardt(generator: nn.Module, z: Tensor, x: Tensor, prior_weight: float, steps: int) -> Tensor:
    """``steps`` damped Gauss-Newton steps (module docstring) on mean (G(z) - x)^2 + (prior_weight / d) |z|^2
    for each image, :data:`REFINE_BATCH` images at a time; returns the refined (b, d) latents."""
    out = []
    for sl in chunks(z.shape[0], REFINE_BATCH):
        out.append(_lm_block(generator, z[sl].detach(), x[sl].reshape(z[sl].shape[0], -1), prior_weight, steps))
    return torch.cat(out)


def _lm_block(generator: nn.Module, z: Tensor, x: Tensor, prior_weight: float, steps: int) -> Tensor:
    """Levenberg-Marquardt on one block of images with their full Jacobians (b, D, d), recomputed for
    the images whose step was kept. (A matrix-free variant -- J^T J v by forward- and reverse-mode
    products, conjugate gradients for the system -- reached a worse error per CPU second on the
    default DCGAN: 8.3e-4 median MSE after 20 steps against 4.0e-4, 2026-12-07.)"""
    b, d = z.shape
    D = x.shape[1]
    w = prior_weight / d
    eye = torch.eye(d, dtype=torch.float64, device=z.device)

    def objective(zz: Tensor) -> Tuple[Tensor, Tensor]:
        with torch.no_grad():
            r = (generator(zz).reshape(b, -1) - x).double()
        return r.square().mean(1) + w * zz.double().square().sum(1), r

    f, r = objective(z)
    J = jacobian(generator, z).reshape(b, D, d).double()
    lam = torch.full((b,), LM_DAMPING, dtype=torch.float64, device=z.device)
    for _ in range(steps):
        JtJ = J.transpose(1, 2) @ J / D
        A = JtJ + lam.view(b, 1, 1) * torch.diag_embed(JtJ.diagonal(dim1=1, dim2=2)) + w * eye
        g = (J.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1) / D + w * z.double()
        trial = z + (-torch.linalg.solve(A, g)).to(z.dtype)
        f_new, r_new = objective(trial)
        ok = f_new < f
        z = torch.where(ok.unsqueeze(1), trial, z)
        f, r = torch.where(ok, f_new, f), torch.where(ok.unsqueeze(1), r_new, r)
        lam = torch.where(ok, lam * LM_DECREASE, lam * LM_INCREASE)
        if bool(ok.any()):
            moved = ok.nonzero().squeeze(1)
            J[moved] = jacobian(generator, z[moved]).reshape(-1, D, d).double()
    return z
