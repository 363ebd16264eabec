r"""Sharpness probe: the top eigenvalue of the generator loss's Hessian with respect to the
generator's parameters, by power iteration on Hessian-vector products.

.. math:: v_{k+1} = \frac{H v_k}{\|H v_k\|}, \qquad \lambda_k = v_k^\top H v_k, \qquad
          H v = \nabla_\psi\big(\nabla_\psi L_G(\psi)^\top v\big)

(Pearlmutter's trick: one extra backward pass through the graph of the gradient per product).
Power iteration converges to the eigenvalue of largest *magnitude* μ; when μ < 0 a second run on
H − μI (spectrum shifted to ≥ 0) finds the largest algebraic eigenvalue, which the probe reports. The loss is evaluated once per probe, so every product uses the same batch,
latents, observation noise and dropout masks — a fixed function, as the definition needs.

Filippone & Linhard report this quantity (via the ``hessian_eigenthings`` package) as a measure
of how flat a generator's minimum is. As a ``regularizers.sharpness`` entry it changes nothing in
training: it runs every ``every`` generator steps on the step's last batch, in a forked RNG and
with all buffers restored, and writes ``{"step": t, "sharpness": λ}`` to metrics.jsonl.

That in-training probe measures the Hessian of a *mini-batch* loss with BatchNorm in train mode, so
its value depends on the batch size by construction: the top eigenvalue of a b-sample Hessian
over-estimates the full-data one, by about (1 + sqrt(d/b))² for an isotropic d-dimensional least
squares problem (Marchenko–Pastur), and train-mode BatchNorm couples the examples of a batch.
:func:`fixed_batch_sharpness` is the estimator to compare runs trained at different batch sizes:
one fixed, large evaluation batch, every module in eval mode (BatchNorm on its running statistics,
dropout off), so each run is measured on the same deterministic function.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..runtime.seeding import stream_generator
from ..runtime.validation import check_int, check_real
from . import REGULARIZERS
from .base import ProbeContext, Regularizer, preserved_buffers


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return torch.stack([(x * y).sum() for x, y in zip(a, b)]).sum()


def _power_iteration(hvp: Callable[[List[Tensor]], List[Tensor]], v: List[Tensor], iters: int, tol: float) -> float:
    """Rayleigh quotient of the dominant eigenvector of the operator ``hvp``, starting from unit ``v``."""
    estimate: Optional[float] = None
    for _ in range(iters):
        hv = hvp(v)
        value = float(_dot(v, hv))
        hv_norm = float(torch.sqrt(_dot(hv, hv)))
        converged = estimate is not None and abs(value - estimate) <= tol * max(abs(value), 1e-12)
        estimate = value
        if hv_norm == 0.0 or converged:
            break
        v = [h / hv_norm for h in hv]
    return float(estimate) if estimate is not None else 0.0


def top_hessian_eigenvalue(
    loss: Tensor,
    params: Sequence[Tensor],
    iters: int = 20,
    tol: float = 1e-3,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Largest (algebraic) eigenvalue of ∇²_ψ ``loss``, by power iteration on Hessian-vector products.

    Power iteration finds the eigenvalue μ of largest magnitude. If μ < 0 (a saddle with strong
    negative curvature) a second run on the shifted operator H − μI, whose spectrum is ≥ 0 with
    top λ_max − μ, gives λ_max. Each run uses at most ``iters`` products and stops when successive
    estimates differ by less than ``tol`` (relative). ``generator`` (CPU) draws the starting vector,
    so the result is deterministic. Parameters the loss does not depend on have zero curvature.
    """
    params = [p for p in params if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
    if not pairs:
        return 0.0  # the loss is (locally) linear in ψ
    used: List[Tensor] = [p for p, _ in pairs]
    grads_used: List[Tensor] = [g for _, g in pairs]

    def hvp(v: List[Tensor]) -> List[Tensor]:
        hv = torch.autograd.grad(grads_used, used, grad_outputs=v, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(used, hv)]

    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in used]
    norm = torch.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    mu = _power_iteration(hvp, v, iters, tol)
    if mu >= 0:
        return mu
    shifted = _power_iteration(lambda u: [h - mu * x for h, x in zip(hvp(u), u)], v, iters, tol)
    return shifted + mu


def fixed_batch_sharpness(
    loss_fn: Callable[[], Tensor],
    params: Sequence[Tensor],
    modules: Sequence[nn.Module],
    iters: int = 20,
    tol: float = 1e-3,
    generator: Optional[torch.Generator] = None,
) -> float:
    r"""Top Hessian eigenvalue of ``loss_fn()`` w.r.t. ``params`` with every one of ``modules`` in
    eval mode: BatchNorm normalises with its running statistics (so the loss is a mean of
    per-example terms that do not depend on the rest of the batch) and dropout is off (so every
    Hessian-vector product differentiates the same function). ``loss_fn`` evaluates the loss on a
    fixed evaluation batch chosen by the caller (the same for every run that is compared).

    For a loss :math:`L(\psi) = \frac1m\sum_{i=1}^m \ell(x_i;\psi)` on a fixed batch this is
    :math:`\lambda_{\max}(\nabla^2_\psi L)`, computed by :func:`top_hessian_eigenvalue`; as m grows
    it tends to the full-data value, whatever batch size the model was trained with. Train/eval
    flags and ``requires_grad`` of parameters outside ``params`` are restored afterwards; buffers
    are not written (eval-mode BatchNorm reads its statistics only).
    """
    wanted = {id(p) for p in params}
    flags = [(m, m.training) for mod in modules for m in mod.modules()]
    others = [(p, p.requires_grad) for mod in modules for p in mod.parameters() if id(p) not in wanted]
    try:
        for mod in modules:
            mod.eval()
        for p, _ in others:
            p.requires_grad_(False)  # curvature w.r.t. ``params`` only; no graph for the rest
        return top_hessian_eigenvalue(loss_fn(), params, iters, tol, generator)
    finally:
        for m, flag in flags:
            m.training = flag
        for p, flag in others:
            p.requires_grad_(flag)


@REGULARIZERS.register()
class SharpnessProbe(Regularizer):
    """Logs the generator loss's top Hessian eigenvalue every ``every`` steps (a probe: no effect
    on training).

    Args:
        every: k ≥ 1, generator steps between probes (default 100).
        iters: maximum power iterations (Hessian-vector products), ≥ 1 (default 20).
        tol: relative change that stops the iteration early, ≥ 0 (default 1e-3).
    """

    name = "sharpness"
    changes_training = False  # a probe: it reads the model, never changes it

    def __init__(self, every: int = 100, iters: int = 20, tol: float = 1e-3) -> None:
        what = "regularizers.sharpness"
        self.every, self.iters = check_int("every", every, owner=what), check_int("iters", iters, owner=what)
        self.tol = check_real("tol", tol, ge=0.0, owner=what)

    def probe(self, step: int, ctx: ProbeContext) -> Dict[str, float]:
        if step % self.every != 0:
            return {}
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        # fork the global RNG (dropout masks, interpolates) and restore buffers (BatchNorm
        # statistics): the probe must leave the training run bit-identical to one without it
        with torch.random.fork_rng(devices=devices), preserved_buffers(ctx.generator, ctx.discriminator):
            loss = ctx.generator_loss()
            start = stream_generator("sharpness_probe", ctx.seed, step)
            value = top_hessian_eigenvalue(loss, list(ctx.generator.parameters()), self.iters, self.tol, start)
        return {"sharpness": value}

    def extra_repr(self) -> str:
        return f"every={self.every}, iters={self.iters}, tol={self.tol:g}"


__all__ = ["top_hessian_eigenvalue", "fixed_batch_sharpness", "SharpnessProbe"]
