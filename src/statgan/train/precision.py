"""Speed switches of the ``train`` section: mixed precision, TF32, channels-last and ``torch.compile``.

* ``train.precision``: ``fp32`` (default: nothing changes), ``bf16`` (forward passes under
  ``torch.autocast(dtype=bfloat16)``; works on CUDA and CPU; same exponent range as fp32, so no
  loss scaling) or ``fp16`` (autocast to float16 plus one dynamic ``GradScaler`` per network;
  CUDA only — on any other device it is a one-line error, not a silent fallback).
  Weights, optimizer states, EMA and checkpoints stay fp32; backward passes run outside autocast
  as torch recommends. Gradient penalties (R1, GP, ``param_grad``) are taken inside autocast and
  without loss scaling, so under fp16 their input gradients can underflow: prefer bf16 with them.
* ``train.tf32``: ``null`` leaves torch's defaults (TF32 off for matmul, on for cuDNN
  convolutions), ``true`` allows TF32 in both, ``false`` forbids it in both (Ampere and newer GPUs).
* ``train.channels_last``: image networks and batches in NHWC memory layout (faster convolutions
  on tensor cores); no effect on vector data.
* ``train.compile``: ``torch.compile`` on G and D (in place, so checkpoints keep their keys).
  torch.compile cannot differentiate twice, so it cannot be combined with double
  back-propagation (``regularizers.param_grad``, ``sample_grad``, ``r1``, ``r2``, ``gp``,
  ``sharpness``, objectives ``wgan-gp``, ``wgan-div``, ``mmd-gan``): that ends in a one-line error
  at the first such step (see :func:`is_double_backward_error`).

With ``fp16`` the optimizer of each network is wrapped in :class:`ScaledOptimizer` *before* the
regularisers wrap it (SAM), so SAM's two passes both back-propagate the scaled loss (its
perturbation direction does not depend on the scale) and the scaler unscales, skips steps with
inf/NaN gradients and adapts the scale exactly once per update.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, ContextManager, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError, StatganError
from ..optim import OptimizerWrapper

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's own check: AVX-512 BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class ScaledOptimizer(OptimizerWrapper):
    """``base`` stepping through a :class:`torch.amp.GradScaler`; checkpoints see the base optimizer."""

    def __init__(self, base: torch.optim.Optimizer, scaler: Any) -> None:
        self.base, self.scaler = base, scaler

    def step(self, closure: Optional[Callable[[], Tensor]] = None) -> Optional[Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.scaler.step(self.base)  # unscales; skips the step if a gradient is inf/NaN
        self.scaler.update()
        return loss


class Precision:
    """The four switches, validated against the device; the trainer asks it for an autocast
    context, how to back-propagate, and how to prepare networks and batches."""

    def __init__(self, precision: str, device: torch.device, tf32: Optional[bool] = None,
                 channels_last: bool = False, compile: bool = False) -> None:
        if precision not in DTYPES:
            raise ConfigError(f"train.precision: {precision!r} is not allowed; expected one of {', '.join(DTYPES)}")
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError(
                f"train.precision=fp16 needs a CUDA device (float16 training relies on CUDA's gradient scaling), "
                f"but this run is on {device.type}; use train.precision=bf16 (CPU and CUDA) or fp32"
            )
        if precision == "bf16" and device.type not in ("cuda", "cpu"):
            raise ConfigError(f"train.precision=bf16 is supported on CUDA and CPU, not on {device.type}; use fp32")
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision=bf16 but this GPU has no bfloat16 support; use fp16 or fp32")
        if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
            # not an error (the result is right), but autocast then converts every operand in
            # software: 20x slower than fp32 for the default networks on an AVX2 CPU (docs/scaling.md)
            warnings.warn("train.precision=bf16 on a CPU without native bfloat16 (AVX-512 BF16 / AMX): autocast "
                          "emulates it and trains many times slower than fp32; use train.precision=fp32 here",
                          RuntimeWarning, stacklevel=2)
        self.name, self.device = precision, device
        self.dtype = DTYPES[precision]
        self.channels_last, self.compile = bool(channels_last), bool(compile)
        if tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
            torch.backends.cudnn.allow_tf32 = bool(tf32)

    @property
    def scaled(self) -> bool:
        """Whether gradients go through a GradScaler (fp16)."""
        return self.name == "fp16"

    def autocast(self) -> ContextManager[Any]:
        """The context forward passes run in (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def bf16_hint(self, image_data: bool) -> Optional[str]:
        """One line for a new fp32 run of image networks on a CPU that computes bfloat16 natively:
        there bf16 autocast is the cheaper step (docs/quality.md, third and fourth screens: the default
        recipe took 1.4x the steps per CPU-minute and learned as well per step). None anywhere else: on
        a CPU without it bf16 is emulated and many times slower, and the gain was measured on
        convolutional networks."""
        if self.device.type != "cpu" or self.name != "fp32" or not image_data or not cpu_has_bf16():
            return None
        return ("hint: this CPU computes bfloat16 natively; train.precision=bf16 takes about 1.4x the steps per "
                "CPU-minute with these networks and learns as well per step (docs/quality.md)")

    def grad_scaler(self) -> Any:
        """A fresh GradScaler for fp16 (one per network), else None."""
        return torch.amp.GradScaler(self.device.type) if self.scaled else None

    def wrap_optimizer(self, opt: torch.optim.Optimizer, scaler: Any) -> Any:
        return ScaledOptimizer(opt, scaler) if scaler is not None else opt

    def prepare(self, *modules: nn.Module, image_data: bool) -> None:
        """Channels-last layout for image networks (in place)."""
        if self.channels_last and image_data:
            for m in modules:
                m.to(memory_format=torch.channels_last)

    def compile_modules(self, *modules: nn.Module) -> None:
        """``module.compile()`` in place: the state_dict keys (and so checkpoints) are unchanged."""
        if self.compile:
            for m in modules:
                m.compile()

    def input(self, x: Tensor) -> Tensor:
        """A real batch in the networks' memory layout."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def is_double_backward_error(exc: BaseException) -> bool:
    """torch.compile's refusal to differentiate a compiled graph twice."""
    return isinstance(exc, RuntimeError) and "double backward" in str(exc)


def double_backward_error() -> StatganError:
    return ConfigError(
        "train.compile=true cannot be combined with double back-propagation (regularizers param_grad, sample_grad, "
        "r1, r2, gp, sharpness, or objectives wgan-gp, wgan-div, mmd-gan): torch.compile does not support it; "
        "set train.compile=false"
    )


__all__ = ["DTYPES", "Precision", "ScaledOptimizer", "cpu_has_bf16", "is_double_backward_error", "double_backward_error"]
