"""Checkpoints: tensors in safetensors, everything else in JSON; nothing is ever unpickled.

A checkpoint at step N is two files in ``RUN_DIR/checkpoints/``::

    step-000N.safetensors   every tensor (weights, EMA, optimizer moments, RNG states)
    step-000N.json          metadata: step, resolved config, optimizer hyper-parameters,
                            data shape, library versions and the sha256 of the .safetensors file

Both are written atomically (temporary file in the same folder, fsync, ``os.replace``), the tensor
file first and the JSON last, so the JSON is the commit marker: a crash mid-write leaves at most a
stray temporary file and never a half-written checkpoint under a real name. On load the sha256 is
checked before the bytes are parsed, so a truncated or corrupt file is refused with its name.
Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import CheckpointError
from .files import atomic_write_bytes

FORMAT = "statgan-checkpoint/1"
_NAME = re.compile(r"^step-(\d+)\.json$")


def checkpoint_paths(ckpt_dir: Path, step: int) -> Tuple[Path, Path]:
    stem = f"step-{step:06d}"
    return ckpt_dir / f"{stem}.safetensors", ckpt_dir / f"{stem}.json"


def list_checkpoints(ckpt_dir: Path) -> List[Tuple[int, Path]]:
    """(step, json path) of every committed checkpoint, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_dir: Path) -> Optional[Path]:
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def set_aside(js_path: Path) -> None:
    """Rename a checkpoint's two files to ``*.corrupt``: out of the step sequence (never listed,
    resumed from or rotated away) but kept for inspection."""
    js_path = Path(js_path)
    m = _NAME.match(js_path.name)
    paths = checkpoint_paths(js_path.parent, int(m.group(1))) if m else (js_path,)
    for p in paths:
        if p.exists():
            p.rename(p.with_name(p.name + ".corrupt"))


def _prepare(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; copies are cheap at these sizes and
    # decouple the file from live parameters.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_checkpoint(
    ckpt_dir: Path, step: int, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any], keep: int,
    name: Optional[str] = None,
) -> Path:
    """Write checkpoint ``step`` atomically and delete all but the newest ``keep``. Returns the JSON path.

    With ``name`` (e.g. "best") the files are ``name.safetensors`` / ``name.json``, outside the
    step sequence and never rotated away.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if name is not None:
        st_path, js_path = ckpt_dir / f"{name}.safetensors", ckpt_dir / f"{name}.json"
    else:
        st_path, js_path = checkpoint_paths(ckpt_dir, step)
    blob = st_save(_prepare(tensors))
    atomic_write_bytes(st_path, blob)
    record = {
        "format": FORMAT,
        "step": int(step),
        "tensors_file": st_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        **meta,
    }
    atomic_write_bytes(js_path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    if name is not None:
        return js_path
    for old_step, old_js in list_checkpoints(ckpt_dir)[:-keep]:
        old_st, _ = checkpoint_paths(ckpt_dir, old_step)
        old_js.unlink(missing_ok=True)
        old_st.unlink(missing_ok=True)
    return js_path


def load_checkpoint(js_path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read and verify a checkpoint; CheckpointError naming the file if anything is off."""
    js_path = Path(js_path)
    if js_path.suffix == ".safetensors":
        js_path = js_path.with_suffix(".json")
    try:
        meta = json.loads(js_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint metadata {str(js_path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint metadata {str(js_path)!r} is corrupt or truncated (not valid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(js_path)!r} is not a statgan checkpoint (expected format {FORMAT!r})")
    st_path = js_path.parent / str(meta.get("tensors_file", ""))
    try:
        blob = st_path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise CheckpointError(f"checkpoint tensors {str(st_path)!r} are missing (named by {str(js_path)!r})") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(
            f"checkpoint tensors {str(st_path)!r} are corrupt or truncated "
            f"({len(blob)} bytes, expected {meta.get('size')} with sha256 {str(meta.get('sha256'))[:12]}…)"
        )
    try:
        tensors = st_load(blob)
    except Exception as exc:  # a hash match makes this near-impossible, but never leak a traceback
        raise CheckpointError(f"checkpoint tensors {str(st_path)!r} cannot be parsed: {exc}") from None
    return tensors, meta


# ---- packing helpers ---------------------------------------------------------------------------
def pack_module(prefix: str, module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _misfit(own: Dict[str, torch.Tensor], saved: Dict[str, torch.Tensor]) -> str:
    """How the checkpoint's tensors differ from the model's, in one line (torch's own message spans
    several lines and names the class only)."""
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    shaped = [k for k in own if k in saved and own[k].shape != saved[k].shape]
    parts = []
    if shaped:
        k = shaped[0]
        parts.append(f"{len(shaped)} of another shape (e.g. {k}: checkpoint {list(saved[k].shape)}, model "
                     f"{list(own[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} missing from the checkpoint (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} the model does not have (e.g. {extra[0]})")
    return "; ".join(parts) or "they differ"


def unpack_module(prefix: str, module: torch.nn.Module, tensors: Dict[str, torch.Tensor], source: str) -> None:
    sd = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError:
        raise CheckpointError(f"{source}: weights for {prefix!r} do not fit the model: {_misfit(module.state_dict(), sd)} "
                              "-- the model config differs from the one the checkpoint was trained with") from None


def pack_optimizer(prefix: str, opt: torch.optim.Optimizer) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Split an optimizer's state_dict into tensors (per-parameter state) and JSON (param groups)."""
    sd = opt.state_dict()
    tensors: Dict[str, torch.Tensor] = {}
    scalars: Dict[str, Dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, val in state.items():
            if torch.is_tensor(val):
                tensors[f"{prefix}.state.{idx}.{name}"] = val
            else:
                scalars.setdefault(str(idx), {})[name] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(
    prefix: str, opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any], source: str
) -> None:
    state: Dict[int, Dict[str, Any]] = {}
    head = prefix + ".state."
    for k, v in tensors.items():
        if k.startswith(head):
            idx, name = k[len(head) :].split(".", 1)
            state.setdefault(int(idx), {})[name] = v
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: optimizer state {prefix!r} does not fit the model ({exc})") from None
