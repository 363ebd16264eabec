"""The regulariser interface: hooks the training loop calls without knowing any regulariser (or
objective) by name.

One loss evaluation in the trainer looks like this (both for the discriminator and the generator)::

    start_step(step, G, D)                        once per generator step, before its batches (schedules)
    begin_batch(real, fake, step)                 once per generated batch (draw observation noise)
    real' = transform_real(real)                  what D sees as data
    fake' = transform_fake(fake)                  what D sees as generated (same noise on re-evaluation)
    L     = objective loss on (real', fake')
    L    += Σ_r penalty(LossContext(net, L, real', fake', ...))      extra loss terms
    repeated evaluations(net) times and averaged  (Monte-Carlo dropout)
    optimizer = wrap_optimizer(net, optimizer)    (sharpness-aware minimisation)

plus bookkeeping hooks: ``network_params`` (constructor parameters for G and D, e.g. a dropout
rate; the keys it may set are declared in ``network_keys`` so that a config can be checked against
the networks' signatures without building anything), ``check`` (compatibility with an objective,
when the run is built), ``scalars`` (values for
metrics.jsonl at each logging step), ``probe`` (diagnostics after a step, e.g. sharpness) and
``state_tensors`` / ``load_state_tensors`` (RNG state for bit-identical resume).

Every hook has a no-op default, so a regulariser implements only what it needs, and an empty
:class:`RegularizerSet` leaves the loop exactly as it was (same operations, same bits). A class
also declares ``name`` (its registered name) and ``changes_training`` (False for probes, which a
resumed run may switch on or off without ``--force``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..objectives.base import Objective
from ..runtime.validation import check_choice

#: the two networks a regulariser can act on, as named in ``LossContext.net`` and ``nets`` parameters
GENERATOR, DISCRIMINATOR = "generator", "discriminator"
#: values of the ``nets`` parameter (SAM, MC dropout) and the networks each one selects
NETS_CHOICES: Dict[str, Tuple[str, ...]] = {"both": (GENERATOR, DISCRIMINATOR), "g": (GENERATOR,), "d": (DISCRIMINATOR,)}


@dataclass
class LossContext:
    """What a penalty sees: one evaluation of one network's loss, still in the autograd graph.

    ``loss`` is the objective's loss (before any penalty); ``real`` and ``fake`` are the
    discriminator's inputs after :meth:`Regularizer.transform_real` / ``transform_fake``. In the
    discriminator step ``fake`` is detached from the generator; in the generator step gradients
    flow through it into the generator (and the discriminator's parameters do not require grad).
    """

    net: str
    loss: Tensor
    real: Tensor
    fake: Tensor
    generator: nn.Module
    discriminator: nn.Module
    step: int


@dataclass
class ProbeContext:
    """What a probe sees after a generator step: the networks and a closure that re-evaluates the
    objective's generator loss on the step's last batch (fresh forward pass, same latents, same
    observation noise) at the current weights."""

    generator: nn.Module
    discriminator: nn.Module
    generator_loss: Callable[[], Tensor]
    seed: int
    device: torch.device


class Regularizer:
    """Base class: every hook is a no-op."""

    #: the registered name, declared in each registered class's body (the registry reads it)
    name: ClassVar[str] = "regularizer"

    #: False for a probe that only reads the model (``sharpness``): switching it on, off or
    #: changing its parameters when resuming leaves what is learned unchanged
    changes_training: ClassVar[bool] = True

    #: the network constructor parameters :meth:`network_params` may set (checked against the
    #: networks' signatures when a config is validated, before anything is built)
    network_keys: ClassVar[Tuple[str, ...]] = ()
    #: the networks whose parameters :meth:`network_params` may set
    network_families: ClassVar[Tuple[str, ...]] = (GENERATOR, DISCRIMINATOR)

    # ---- configuration ---------------------------------------------------------------------------
    def network_params(self, family: str) -> Dict[str, Any]:
        """Constructor parameters this regulariser sets on the ``family`` network ("generator" or
        "discriminator"), merged into ``model.<family>`` when the networks are built; keys from
        :attr:`network_keys`."""
        return {}

    def check(self, objective: Objective) -> None:
        """Raise :class:`ConfigError` if this regulariser cannot work with ``objective``."""

    def bind(self, seed: int, device: torch.device) -> None:
        """Called once by the trainer before training (seed private RNGs here)."""

    # ---- the loss ----------------------------------------------------------------------------------
    def start_step(self, step: int, generator: nn.Module, discriminator: nn.Module) -> None:
        """Before generator step ``step`` (steps done so far) and its discriminator steps: set the
        networks' state for it (a schedule of the architecture, e.g. progressive growing). A pure
        function of ``step``, so a resumed run sets what an uninterrupted one did."""

    def begin_batch(self, real: Tensor, fake: Tensor, step: int) -> None:
        """A new real batch and generated batch (before any transform); ``step`` = generator steps done."""

    def transform_real(self, real: Tensor) -> Tensor:
        return real

    def transform_fake(self, fake: Tensor) -> Tensor:
        return fake

    def penalty(self, ctx: LossContext) -> Optional[Tensor]:
        """A scalar added to ``ctx.loss`` (already weighted), or None when not acting on ``ctx.net``."""
        return None

    def evaluations(self, net: str) -> int:
        """How many loss evaluations are averaged per update of ``net`` (Monte-Carlo samples)."""
        return 1

    def wrap_optimizer(self, net: str, optimizer: Any, modules: Sequence[nn.Module]) -> Any:
        """The optimizer used for ``net`` (``optimizer`` itself, or a wrapper around it).

        The trainer always calls ``optimizer.step(closure)`` with a closure that zeroes the
        gradients, re-evaluates the loss and back-propagates it; ``modules`` are the networks the
        closure runs (their buffers may need protecting when the closure is re-run).
        """
        return optimizer

    # ---- logging and state ------------------------------------------------------------------------
    def scalars(self, step: int) -> Dict[str, float]:
        """Values for the periodic metrics.jsonl record."""
        return {}

    def probe(self, step: int, ctx: ProbeContext) -> Dict[str, float]:
        """Diagnostics after generator step ``step``, logged as their own record when non-empty.
        Must not change the training trajectory (weights, buffers, RNG streams)."""
        return {}

    def state_tensors(self) -> Dict[str, Tensor]:
        """Tensors to checkpoint (e.g. RNG states), keys local to this regulariser."""
        return {}

    def load_state_tensors(self, tensors: Dict[str, Tensor], source: str) -> None:
        """Restore what :meth:`state_tensors` saved; ``tensors`` holds only this regulariser's keys."""

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class RegularizerSet:
    """The regularisers of a run, applied in a fixed order (sorted by name, so a resumed run sums
    penalties in the same order as the original and gets the same bits)."""

    def __init__(self, members: Sequence[Regularizer] = ()) -> None:
        self.members: List[Regularizer] = sorted(members, key=lambda r: r.name)
        self._transforms_real = [r for r in self.members if type(r).transform_real is not Regularizer.transform_real]
        self._transforms_fake = [r for r in self.members if type(r).transform_fake is not Regularizer.transform_fake]
        self._probing = [r for r in self.members if type(r).probe is not Regularizer.probe]
        self._starting = [r for r in self.members if type(r).start_step is not Regularizer.start_step]
        self._sums: Dict[str, Tensor] = {}
        self._counts: Dict[str, int] = {}

    def __iter__(self) -> Iterator[Regularizer]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, name: str) -> Regularizer:
        for r in self.members:
            if r.name == name:
                return r
        raise KeyError(name)

    # ---- configuration ---------------------------------------------------------------------------
    def network_params(self, family: str, model_params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """``model_params`` (the ``model.<family>`` config) updated with the regularisers' network
        parameters; a key set in both places is a ConfigError (one value, one place)."""
        merged = dict(model_params or {})
        owner: Dict[str, str] = {}
        for r in self.members:
            for key, value in r.network_params(family).items():
                if key in owner:
                    raise ConfigError(f"regularizers.{owner[key]} and regularizers.{r.name} both set model.{family}.{key}")
                if model_params is not None and key in model_params:
                    raise ConfigError(
                        f"model.{family}.{key}={model_params[key]!r} conflicts with regularizers.{r.name} "
                        f"(which sets {key}={value!r}); set it in one place"
                    )
                owner[key] = r.name
                merged[key] = value
        return merged

    def check(self, objective: Objective) -> None:
        for r in self.members:
            r.check(objective)

    def bind(self, seed: int, device: torch.device) -> None:
        for r in self.members:
            r.bind(seed, device)

    # ---- the loss ----------------------------------------------------------------------------------
    def start_step(self, step: int, generator: nn.Module, discriminator: nn.Module) -> None:
        for r in self._starting:
            r.start_step(step, generator, discriminator)

    def begin_batch(self, real: Tensor, fake: Tensor, step: int) -> None:
        for r in self.members:
            r.begin_batch(real, fake, step)

    def transform_real(self, real: Tensor) -> Tensor:
        for r in self._transforms_real:
            real = r.transform_real(real)
        return real

    def transform_fake(self, fake: Tensor) -> Tensor:
        for r in self._transforms_fake:
            fake = r.transform_fake(fake)
        return fake

    def evaluations(self, net: str) -> int:
        return max([1] + [r.evaluations(net) for r in self.members])

    def add_penalties(self, ctx: LossContext, record: bool = True) -> Tensor:
        """``ctx.loss`` plus every penalty; with ``record`` their values are kept for :meth:`scalars`."""
        total = ctx.loss
        for r in self.members:
            term = r.penalty(ctx)
            if term is None:
                continue
            total = total + term
            if record:
                value = term.detach()
                self._sums[r.name] = self._sums[r.name] + value if r.name in self._sums else value
                self._counts[r.name] = self._counts.get(r.name, 0) + 1
        return total

    def wrap_optimizer(self, net: str, optimizer: Any, modules: Sequence[nn.Module]) -> Any:
        for r in self.members:
            optimizer = r.wrap_optimizer(net, optimizer, modules)
        return optimizer

    # ---- logging and state ------------------------------------------------------------------------
    def scalars(self, step: int) -> Dict[str, float]:
        """Each member's scalars plus ``penalty.<name>``: the mean weighted penalty since the last call."""
        out: Dict[str, float] = {}
        for r in self.members:
            out.update(r.scalars(step))
        for name, total in self._sums.items():
            out[f"penalty.{name}"] = (total / self._counts[name]).item()
        self._sums.clear()
        self._counts.clear()
        return out

    def probe(self, step: int, ctx: Callable[[], ProbeContext]) -> Dict[str, float]:
        """Run every member's probe; ``ctx`` is called only if there is a member to use it."""
        out: Dict[str, float] = {}
        if self._probing:
            context = ctx()
            for r in self._probing:
                out.update(r.probe(step, context))
        return out

    def state_tensors(self) -> Dict[str, Tensor]:
        out: Dict[str, Tensor] = {}
        for r in self.members:
            out.update({f"reg.{r.name}.{k}": v for k, v in r.state_tensors().items()})
        return out

    def load_state_tensors(self, tensors: Dict[str, Tensor], source: str) -> None:
        for r in self.members:
            head = f"reg.{r.name}."
            mine = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
            r.load_state_tensors(mine, source)


# --------------------------------------------------------------------------------------------------
# helpers shared by the regularisers
# --------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def preserved_buffers(*modules: nn.Module) -> Iterator[None]:
    """Run a block without lasting effect on the modules' buffers.

    Used for SAM's perturbed pass (statistics of the perturbed network w + e(w) must not leak into
    the real one) and for probes. BatchNorm layers run with ``track_running_stats`` switched off
    (batch statistics as in training, running mean/variance and ``num_batches_tracked`` never
    written — the reference code's approach); any other buffer that changes (spectral-norm
    power-iteration vectors) is copied back afterwards. Not writing BatchNorm's buffers at all
    matters: autograd saves them for backward, so restoring them in place would invalidate a
    graph still pending (the generated batch the generator step reuses).
    """
    norms: List[nn.modules.batchnorm._BatchNorm] = []
    others: List[Tensor] = []
    seen = set()
    for m in modules:
        for sub in m.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and id(sub) not in seen:
                seen.add(id(sub))
                norms.append(sub)
    bn_buffers = {id(b) for n in norms for b in n.buffers(recurse=False)}
    for m in modules:
        for b in m.buffers():
            if id(b) not in seen and id(b) not in bn_buffers:
                seen.add(id(b))
                others.append(b)
    flags = [n.track_running_stats for n in norms]
    saved = [b.detach().clone() for b in others]
    try:
        for n in norms:
            n.track_running_stats = False
        yield
    finally:
        for n, flag in zip(norms, flags):
            n.track_running_stats = flag
        with torch.no_grad():
            for b, s in zip(others, saved):
                if not torch.equal(b, s):
                    b.copy_(s)



def check_nets(what: str, value: Any) -> Tuple[str, ...]:
    """The networks named by a ``nets`` parameter: both, g or d."""
    return NETS_CHOICES[check_choice("nets", value, NETS_CHOICES, owner=what)]


def require_discriminator(what: str, objective: Objective) -> None:
    """ConfigError if ``objective`` trains no discriminator (``has_discriminator = False``, e.g. gmmn)."""
    if not objective.has_discriminator:
        raise ConfigError(f"{what} acts on the discriminator, but objective {objective.name!r} trains none")


def load_rng_state(gen: torch.Generator, tensors: Dict[str, Tensor], key: str, source: str) -> None:
    """Restore a private CPU generator's state saved under ``key``.

    A checkpoint written before the regulariser was switched on (resume with ``--force``) has no
    such key: the generator then keeps its fresh seeded state.
    """
    if key not in tensors:
        return
    try:
        gen.set_state(tensors[key])
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: RNG state {key!r} is invalid ({exc})") from None


def load_step_counter(tensors: Dict[str, Tensor], key: str, source: str, default: int) -> int:
    """A non-negative integer counter saved under ``key`` as a 0-d tensor (``default`` when absent,
    as for a checkpoint written before the regulariser was switched on)."""
    if key not in tensors:
        return default
    t = tensors[key]
    if t.numel() != 1 or t.is_floating_point() or int(t.item()) < 0:
        raise CheckpointError(f"{source}: counter {key!r} is invalid ({t!r})")
    return int(t.item())


__all__ = [
    "GENERATOR",
    "DISCRIMINATOR",
    "NETS_CHOICES",
    "LossContext",
    "ProbeContext",
    "Regularizer",
    "RegularizerSet",
    "preserved_buffers",
    "check_nets",
    "require_discriminator",
    "load_rng_state",
    "load_step_counter",
]
