"""The loader of checkpoints from anywhere (a path, bytes, a browser upload): `load_checkpoint`.

The format itself (one self-describing file: .safetensors or .pt with the config, tokenizer and
training record as text metadata; `save_checkpoint`) is defined by models.checkpoint_format,
which is re-exported here. This module adds what a file from elsewhere needs:
- sizes checked before anything is allocated: the file against `max_checkpoint_bytes()` before
  it is read whole, every tensor against the config's shapes before it is copied;
- `*.pt` files read only with `torch.load(..., weights_only=True)` on torch >= 2.10, and only
  after the archive passed the static checks of caracal_viz.pickle_scan (which do not rely on
  torch's unpickler). Nothing is ever unpickled otherwise;
- the device, and the file's SHA-256, in a `Checkpoint`.
Every problem raises `CheckpointError` with one line that says what is wrong and what to do.
Weights holding NaN or Inf are not a problem of the file: such a checkpoint loads (after every
other check) with the tensors named in `Checkpoint.nonfinite`, and the analyses say "cannot
certify" where those values reach.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models import ByteLM, ByteTokenizer, ModelConfig
from models.checkpoint_format import (EXTENSIONS, FORMAT, FORMAT_VERSION, CheckpointError, build_model,
                                      check_tensors_fit, parse_fields, read_safetensors, save_checkpoint, weights_of)

from .pickle_scan import check_pt_archive

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "CheckpointError", "check_checkpoint_size", "default_device",
           "load_checkpoint", "max_checkpoint_bytes", "save_checkpoint", "weights_of"]

# Ten times the largest shipped sample (8 MB); override with CARACAL_MAX_CHECKPOINT_MB.
DEFAULT_MAX_BYTES = 80 * 1024 * 1024


def max_checkpoint_bytes() -> int:
    """The largest checkpoint file accepted, in bytes: CARACAL_MAX_CHECKPOINT_MB (a positive
    number of MiB) or 80 MiB; a value that is not a positive finite number is ignored."""
    try:
        mb = float(os.environ.get("CARACAL_MAX_CHECKPOINT_MB", ""))
    except ValueError:
        return DEFAULT_MAX_BYTES
    return int(mb * 1024 * 1024) if math.isfinite(mb) and mb > 0 else DEFAULT_MAX_BYTES


@dataclass
class Checkpoint:
    """A loaded checkpoint: `.model` (eval mode, on `.device`), `.tokenizer`, `.config`,
    `.meta` (the training record), `.name` (file name), `.sha256` (of the file's bytes) and
    `.nonfinite`: the names of the stored tensors holding NaN or Inf, in file order (empty for a
    healthy checkpoint; the loader accepts such weights and flags them here)."""

    model: ByteLM
    tokenizer: ByteTokenizer
    config: ModelConfig
    meta: dict
    name: str
    sha256: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    nonfinite: tuple[str, ...] = ()

    @property
    def num_params(self) -> int:
        """Number of parameters of the model (the tied head counted once)."""
        return self.model.num_parameters()

    @property
    def nonfinite_text(self) -> str | None:
        """One line naming the tensors with NaN/Inf weights, or None when every weight is finite."""
        if not self.nonfinite:
            return None
        n = len(self.nonfinite)
        named = ", ".join(self.nonfinite[:3]) + (f" and {n - 3} more" if n > 3 else "")
        return (f"the weights of {n} tensor{'s' if n > 1 else ''} hold NaN/Inf ({named}): every output they "
                "reach is NaN/Inf, so causality cannot be certified (training diverged?)")


def default_device() -> torch.device:
    """CUDA when a GPU is available, else the CPU: where load_checkpoint puts a model by default."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---- loading -----------------------------------------------------------------------------------
def load_checkpoint(source, device: str | torch.device | None = None, *, name: str | None = None,
                    max_bytes: int | None = None) -> Checkpoint:
    """Load and validate a checkpoint.

    source:    a path, raw bytes, or a file-like object with `.read()` (a Streamlit upload; its
               `.name` is used as the file name, its `.size` checked before anything is read).
               For bytes, pass `name` so the extension is known.
    device:    "cpu", "cuda", a torch.device, or None for CUDA when available.
    max_bytes: the size limit in bytes (default `max_checkpoint_bytes()`); a larger source is
               refused without being read whole.
    Raises CheckpointError for anything that is not a valid caracal-viz checkpoint.
    """
    limit = max_bytes or max_checkpoint_bytes()
    data, name = _read_source(source, name, limit)
    suffix = Path(name).suffix.lower()
    if suffix not in EXTENSIONS:
        raise CheckpointError(f"{name!r} is not a checkpoint file: expected a .safetensors or .pt file")
    if not data:
        raise CheckpointError(f"{name!r} is empty: upload the checkpoint file itself")
    if suffix == ".safetensors":
        config, training, tensors = read_safetensors(data, name)
    else:
        fields, tensors = _parse_pt(data, name)
        config, training = parse_fields(fields, name)
        check_tensors_fit(config, {k: tuple(v.shape) for k, v in tensors.items()}, name)
    model = build_model(config, tensors)
    nonfinite = tuple(k for k, t in tensors.items() if not torch.isfinite(t).all())
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("CUDA was asked for but no GPU is available: choose the CPU")
    return Checkpoint(model=model.to(dev).eval(), tokenizer=ByteTokenizer(), config=config, meta=training,
                      name=name, sha256=hashlib.sha256(data).hexdigest(), device=dev, nonfinite=nonfinite)


def _read_source(source, name: str | None, limit: int) -> tuple[bytes, str]:
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise CheckpointError(f"no checkpoint file at {str(p)!r}: check the path")
        check_checkpoint_size(p.stat().st_size, p.name, limit)
        with p.open("rb") as f:
            data = f.read(limit + 1)  # the file may have grown since stat
        check_checkpoint_size(len(data), p.name, limit)
        return data, name or p.name
    if isinstance(source, (bytes, bytearray, memoryview)):
        check_checkpoint_size(len(source), name or "upload", limit)
        return bytes(source), name or "upload.safetensors"
    if hasattr(source, "read"):
        name = name or getattr(source, "name", None) or "upload"
        if not isinstance(name, str):
            raise CheckpointError(f"the upload's name is a {type(name).__name__}, not text: pass name=")
        size = getattr(source, "size", None)
        if isinstance(size, int):
            check_checkpoint_size(size, name, limit)
        if hasattr(source, "seek"):  # an upload read on an earlier run starts at its end
            source.seek(0)
        data = source.read(limit + 1)  # never more than the limit, even when the size is unknown
        if not isinstance(data, (bytes, bytearray)):
            raise CheckpointError(f"{name!r} was opened as text: open the checkpoint in binary mode ('rb')")
        check_checkpoint_size(len(data), name, limit)
        return bytes(data), name
    raise CheckpointError(f"cannot read a checkpoint from a {type(source).__name__}: pass a path or bytes")


def check_checkpoint_size(size: int, name: str, limit: int | None = None) -> None:
    """Raise CheckpointError when a file of `size` bytes is over the limit (default
    `max_checkpoint_bytes()`): called before a file is read whole."""
    limit = limit or max_checkpoint_bytes()
    if size > limit:
        raise CheckpointError(
            f"{name!r} is {size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB limit for checkpoints "
            "(raise it with CARACAL_MAX_CHECKPOINT_MB)")


def _parse_pt(data: bytes, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 10):
        raise CheckpointError(f"loading .pt files needs torch >= 2.10 (this is {torch.__version__}): "
                              "upgrade torch or use the .safetensors file")
    check_pt_archive(data, name)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise CheckpointError(f"{name!r} contains Python objects that need code to load, and caracal-viz never "
                              f"runs code from a file; save a plain state dict or .safetensors ({first})") from None
    except Exception as e:  # a damaged archive can fail in many ways inside torch.load
        raise CheckpointError(f"{name!r} could not be read as a PyTorch checkpoint ({type(e).__name__}): "
                              "the file is truncated or corrupt") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name!r} holds a {type(obj).__name__}, not a caracal-viz checkpoint dict")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{name!r} has no 'state_dict' of named tensors: it is not a caracal-viz checkpoint")
    fields = {k: v for k, v in obj.items() if k != "state_dict"}
    # Metadata is text, as in .safetensors; anything else is never formatted (str() of nested
    # shared references can be exponentially long).
    for k, v in fields.items():
        if not isinstance(k, str) or not isinstance(v, str):
            what = repr(k[:40]) if isinstance(k, str) else f"a {type(k).__name__} key"
            raise CheckpointError(f"{name!r}: metadata {what} is a {type(v).__name__}; caracal-viz checkpoints "
                                  "store metadata as text (save with caracal_viz.save_checkpoint)")
    for k, v in state.items():
        if v.dtype != torch.float32:
            raise CheckpointError(f"{name!r}: tensor {k[:60]!r} is {v.dtype}; caracal-viz checkpoints store float32")
    return fields, state
