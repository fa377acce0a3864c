"""The checkpoint format and its loader.

One self-describing file, so that a browser upload is a single file:
- `*.safetensors` (preferred): the weights (float32) plus string metadata
  {"format": "caracal-viz", "format_version": "1", "config": JSON, "tokenizer": JSON,
   "training": JSON}. The header is parsed and checked here before any tensor is read.
- `*.pt`: a dict with the same fields and "state_dict", read only with
  `torch.load(..., weights_only=True)` on torch >= 2.10. Nothing is ever unpickled otherwise.

Every problem raises `CheckpointError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models import ByteLM, ByteTokenizer, ConfigError, ModelConfig

FORMAT = "caracal-viz"
FORMAT_VERSION = "1"
EXTENSIONS = (".safetensors", ".pt")
# Ten times the largest shipped sample (8 MB); override with CARACAL_MAX_CHECKPOINT_MB.
DEFAULT_MAX_BYTES = 80 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_METADATA_FIELD = 4 * 1024 * 1024
TIED = "head.weight"  # tied to tok_emb.weight, stored once
DTYPES = {"F32": (torch.float32, 4)}


class CheckpointError(ValueError):
    """A file that is not a usable caracal-viz checkpoint; the message says why, on one line."""


def max_checkpoint_bytes() -> int:
    mb = os.environ.get("CARACAL_MAX_CHECKPOINT_MB")
    try:
        return int(float(mb) * 1024 * 1024) if mb else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


@dataclass
class Checkpoint:
    """A loaded checkpoint: `.model` (eval mode, on `.device`), `.tokenizer`, `.config`,
    `.meta` (the training record), `.name` (file name) and `.sha256` (of the file's bytes)."""

    model: ByteLM
    tokenizer: ByteTokenizer
    config: ModelConfig
    meta: dict
    name: str
    sha256: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def num_params(self) -> int:
        return self.model.num_parameters()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---- saving ------------------------------------------------------------------------------------
def weights_of(model: ByteLM) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: the state dict without the tied output head, float32, CPU."""
    return {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items() if k != TIED}


def save_checkpoint(path: str | Path, model: ByteLM, training: dict) -> Path:
    """Write model + config + tokenizer + training record to `path` (.safetensors or .pt),
    atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    fields = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "tokenizer": json.dumps(ByteTokenizer().describe()),
        "training": json.dumps(training),
    }
    weights = weights_of(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(weights, tmp, metadata=fields)
        elif path.suffix == ".pt":
            torch.save({**fields, "state_dict": weights}, tmp)
        else:
            raise CheckpointError(f"cannot save as {path.suffix!r}: use .safetensors or .pt")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---- loading -----------------------------------------------------------------------------------
def load_checkpoint(source, device: str | torch.device | None = None, *, name: str | None = None,
                    max_bytes: int | None = None) -> Checkpoint:
    """Load and validate a checkpoint.

    source: a path, raw bytes, or a file-like object with `.read()` (a Streamlit upload; its
            `.name` is used as the file name). For bytes, pass `name` so the extension is known.
    device: "cpu", "cuda", a torch.device, or None for CUDA when available.
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
        fields, tensors = _parse_safetensors(data, name)
    else:
        fields, tensors = _parse_pt(data, name)
    config, training = _parse_fields(fields, name)
    model = _build_model(config, tensors, name)
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("CUDA was asked for but no GPU is available: choose the CPU")
    return Checkpoint(model=model.to(dev).eval(), tokenizer=ByteTokenizer(), config=config, meta=training,
                      name=name, sha256=hashlib.sha256(data).hexdigest(), device=dev)


def _read_source(source, name: str | None, limit: int) -> tuple[bytes, str]:
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise CheckpointError(f"no checkpoint file at {str(p)!r}: check the path")
        size = p.stat().st_size
        _check_size(size, p.name, limit)
        return p.read_bytes(), name or p.name
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_size(len(data), name or "upload", limit)
        return data, name or "upload.safetensors"
    if hasattr(source, "read"):
        name = name or getattr(source, "name", None) or "upload"
        size = getattr(source, "size", None)
        if isinstance(size, int):
            _check_size(size, name, limit)
        data = source.read(limit + 1)  # never more than the limit, even when the size is unknown
        _check_size(len(data), name, limit)
        return data, name
    raise CheckpointError(f"cannot read a checkpoint from a {type(source).__name__}: pass a path or bytes")


def _check_size(size: int, name: str, limit: int) -> None:
    if size > limit:
        raise CheckpointError(
            f"{name!r} is {size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB limit for checkpoints "
            "(raise it with CARACAL_MAX_CHECKPOINT_MB)")


def _parse_safetensors(data: bytes, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    if len(data) < 8:
        raise CheckpointError(f"{name!r} is truncated: too short to be a .safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f"{name!r} declares a {n}-byte header, over the {MAX_HEADER_BYTES} limit: not a valid checkpoint")
    if 8 + n > len(data):
        raise CheckpointError(f"{name!r} is truncated: its header runs past the end of the file (re-download it)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{name!r} has a corrupt header: it is not a .safetensors file") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name!r} has a corrupt header: expected a JSON object")
    fields = header.pop("__metadata__", None)
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise CheckpointError(f"{name!r} has no caracal-viz metadata: it is a bare .safetensors file, "
                              "not a caracal-viz checkpoint (save it with caracal_viz.save_checkpoint)")
    body = memoryview(data)[8 + n:]
    tensors: dict[str, torch.Tensor] = {}
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{name!r}: entry {key[:60]!r} in the header is malformed")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise CheckpointError(f"{name!r}: tensor {key[:60]!r} is {dtype}; caracal-viz checkpoints store float32 (F32)")
        if (not isinstance(shape, list) or not all(isinstance(s, int) and 0 <= s < 2**40 for s in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and 0 <= o for o in offsets)):
            raise CheckpointError(f"{name!r}: tensor {key[:60]!r} has an invalid shape or offsets in the header")
        torch_dtype, itemsize = DTYPES[dtype]
        count = 1
        for s in shape:
            count *= s
        begin, end = offsets
        if end - begin != count * itemsize or end > len(body):
            raise CheckpointError(f"{name!r}: tensor {key[:60]!r} has a size in the header that does not match "
                                  "its data (truncated or corrupt file)")
        spans.append((begin, end))
        tensors[key] = torch.frombuffer(bytearray(body[begin:end]), dtype=torch_dtype).reshape(shape) if count \
            else torch.zeros(shape, dtype=torch_dtype)
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise CheckpointError(f"{name!r}: tensor data overlaps or has gaps (corrupt file)")
        pos = end
    if pos != len(body):
        raise CheckpointError(f"{name!r}: the file size does not match its header (truncated or corrupt file)")
    return fields, tensors


def _parse_pt(data: bytes, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 10):
        raise CheckpointError(f"loading .pt files needs torch >= 2.10 (this is {torch.__version__}): "
                              "upgrade torch or use the .safetensors file")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError(f"{name!r} is not a PyTorch zip archive (truncated, corrupt or a legacy format): "
                              "re-save it with torch.save or use .safetensors")
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
    for k, v in state.items():
        if v.dtype != torch.float32:
            raise CheckpointError(f"{name!r}: tensor {k[:60]!r} is {v.dtype}; caracal-viz checkpoints store float32")
    return fields, state


def _json_field(fields: dict, key: str, name: str):
    raw = fields.get(key)
    if raw is None:
        raise CheckpointError(f"{name!r} has no {key!r} in its metadata: not a caracal-viz checkpoint")
    if isinstance(raw, str):
        if len(raw) > MAX_METADATA_FIELD:
            raise CheckpointError(f"{name!r}: the {key!r} metadata is too large")
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise CheckpointError(f"{name!r}: the {key!r} metadata is not valid JSON") from None
    return raw


def _parse_fields(fields: dict, name: str) -> tuple[ModelConfig, dict]:
    if fields.get("format") != FORMAT:
        raise CheckpointError(f"{name!r} is not a caracal-viz checkpoint (metadata 'format' is "
                              f"{str(fields.get('format'))[:40]!r}, expected {FORMAT!r})")
    if str(fields.get("format_version")) != FORMAT_VERSION:
        raise CheckpointError(f"{name!r} uses checkpoint format version {str(fields.get('format_version'))[:20]!r}; "
                              f"this caracal-viz reads version {FORMAT_VERSION}: upgrade caracal-viz")
    try:
        config = ModelConfig.from_dict(_json_field(fields, "config", name))
    except ConfigError as e:
        raise CheckpointError(f"{name!r} has a bad model config: {e}") from None
    tok = _json_field(fields, "tokenizer", name)
    if not isinstance(tok, dict) or tok.get("type") != "bytes" or tok.get("vocab_size") != 256:
        raise CheckpointError(f"{name!r} uses an unknown tokenizer {str(tok)[:80]!r}: caracal-viz reads byte-level models")
    training = _json_field(fields, "training", name)
    if not isinstance(training, dict):
        raise CheckpointError(f"{name!r}: the 'training' metadata must be a JSON object")
    return config, training


def _build_model(config: ModelConfig, tensors: dict[str, torch.Tensor], name: str) -> ByteLM:
    with torch.device("meta"):  # shapes only: a config cannot make us allocate before it is checked
        expected = {k: v.shape for k, v in ByteLM(config).state_dict().items() if k != TIED}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{name!r} is missing {len(missing)} tensor(s) the config needs, e.g. {missing[0]!r}: "
                              "the weights do not belong to this config")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise CheckpointError(f"{name!r} has {len(extra)} tensor(s) the config does not use, e.g. {extra[0][:60]!r}: "
                              "the weights do not belong to this config")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != tuple(shape):
            raise CheckpointError(f"{name!r}: tensor {k!r} has shape {tuple(tensors[k].shape)}, the config needs "
                                  f"{tuple(shape)}: the weights do not belong to this config")
        if not torch.isfinite(tensors[k]).all():
            raise CheckpointError(f"{name!r}: tensor {k!r} contains NaN or Inf: the checkpoint is damaged "
                                  "(training diverged?)")
    model = ByteLM(config)
    model.load_state_dict({**tensors, TIED: tensors["tok_emb.weight"]}, strict=True)
    return model
