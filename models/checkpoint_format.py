"""The caracal-viz checkpoint format: one self-describing file, so that a browser upload is a single file.

`*.safetensors` (preferred): the weights (float32, the tied output head stored once, as
tok_emb.weight) plus string metadata
  {"format": "caracal-viz", "format_version": "1", "config": JSON (ModelConfig.to_dict),
   "tokenizer": JSON (ByteTokenizer.describe), "training": JSON (the training record)}.
`*.pt`: a dict with the same fields and "state_dict", written with torch.save. This module writes
both (`save_checkpoint`, atomically) and reads .safetensors (`read_safetensors`, from bytes, the
header parsed and checked before any tensor is copied; `load_safetensors` for a trusted local
file). Reading a .pt file needs the static pickle checks of caracal_viz (caracal_viz.pickle_scan)
before torch.load: caracal_viz.load_checkpoint does that, and it is the loader for files from
anywhere else (size limits, uploads, devices).

Every problem raises `CheckpointError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ConfigError, ModelConfig
from .files import atomic_write
from .lm import ByteLM
from .tokenizer import ByteTokenizer

FORMAT = "caracal-viz"
FORMAT_VERSION = "1"
EXTENSIONS = (".safetensors", ".pt")
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_METADATA_FIELD = 4 * 1024 * 1024
TIED = "head.weight"  # tied to tok_emb.weight, stored once
DTYPES = {"F32": (torch.float32, 4)}


class CheckpointError(ValueError):
    """A file that is not a usable caracal-viz checkpoint; the message says why, on one line."""


# ---- writing -----------------------------------------------------------------------------------
def weights_of(model: ByteLM) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: the state dict without the tied output head, float32, CPU."""
    return {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items() if k != TIED}


def save_checkpoint(path: str | Path, model: ByteLM, training: dict) -> Path:
    """Write model + config + tokenizer + training record to `path` (.safetensors or .pt),
    atomically (models.files.atomic_write: a temporary file in the same folder, then a rename)."""
    path = Path(path)
    fields = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "tokenizer": json.dumps(ByteTokenizer().describe()),
        "training": json.dumps(training),
    }
    if path.suffix not in EXTENSIONS:
        raise CheckpointError(f"cannot save as {path.suffix!r}: use .safetensors or .pt")
    weights = weights_of(model)

    def write(tmp: str) -> None:
        if path.suffix == ".safetensors":
            save_file(weights, tmp, metadata=fields)
        else:
            torch.save({**fields, "state_dict": weights}, tmp)

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


# ---- reading -----------------------------------------------------------------------------------
def read_safetensors(data: bytes, name: str) -> tuple[ModelConfig, dict, dict[str, torch.Tensor]]:
    """(config, training record, {name: float32 tensor}) of a .safetensors checkpoint's bytes,
    checked in this order: the header, the metadata, the tensors' names and shapes against the
    config, and only then the tensors copied. `name` (the file name) goes into the messages.
    NaN/Inf weights are not checked here (the caller decides what to do with them)."""
    fields, entries, body = _parse_safetensors(data, name)
    config, training = parse_fields(fields, name)
    check_tensors_fit(config, {k: shape for k, (shape, _, _) in entries.items()}, name)
    return config, training, {k: _read_tensor(body, *entry) for k, entry in entries.items()}


def load_safetensors(path: str | Path) -> tuple[ByteLM, dict]:
    """(model on the CPU in eval mode, training record) of a local .safetensors checkpoint, e.g. one
    that models.train wrote (for files from elsewhere use caracal_viz.load_checkpoint)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path.name!r} is not a .safetensors file: load it with caracal_viz.load_checkpoint")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    config, training, tensors = read_safetensors(data, path.name)
    return build_model(config, tensors).eval(), training


def _loads_json(raw: str | bytes):
    """json.loads that fails only with ValueError: deep nesting raises RecursionError and a
    number of more than 4,300 digits a plain ValueError, neither of them a JSONDecodeError."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_safetensors(data: bytes, name: str) -> tuple[dict, dict[str, tuple], memoryview]:
    """Header only: (metadata fields, {tensor name: (shape, begin, end)}, the data section).
    No tensor is read here, so a header cannot make us copy anything before it is checked."""
    if len(data) < 8:
        raise CheckpointError(f"{name!r} is truncated: too short to be a .safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f"{name!r} declares a {n}-byte header, over the {MAX_HEADER_BYTES} limit: not a valid checkpoint")
    if 8 + n > len(data):
        raise CheckpointError(f"{name!r} is truncated: its header runs past the end of the file (re-download it)")
    try:
        header = _loads_json(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{name!r} has a corrupt header: it is not a .safetensors file") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name!r} has a corrupt header: expected a JSON object")
    fields = header.pop("__metadata__", None)
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise CheckpointError(f"{name!r} has no caracal-viz metadata: it is a bare .safetensors file, "
                              "not a caracal-viz checkpoint (save it with caracal_viz.save_checkpoint)")
    body = memoryview(data)[8 + n:]
    entries: dict[str, tuple] = {}
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{name!r}: entry {key[:60]!r} in the header is malformed")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(f"{name!r}: tensor {key[:60]!r} is {str(dtype)[:20]}; caracal-viz checkpoints "
                                  "store float32 (F32)")
        # type() is int, not isinstance: JSON true/false arrive as bool, a subclass of int
        if (not isinstance(shape, list) or not all(type(s) is int and 0 <= s < 2**40 for s in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int and 0 <= o for o in offsets)):
            raise CheckpointError(f"{name!r}: tensor {key[:60]!r} has an invalid shape or offsets in the header")
        begin, end = offsets
        if end - begin != math.prod(shape) * DTYPES[dtype][1] or end > len(body):
            raise CheckpointError(f"{name!r}: tensor {key[:60]!r} has a size in the header that does not match "
                                  "its data (truncated or corrupt file)")
        entries[key] = (tuple(shape), begin, end)
    pos = 0
    for begin, end in sorted((b, e) for _, b, e in entries.values()):
        if begin != pos:
            raise CheckpointError(f"{name!r}: tensor data overlaps or has gaps (corrupt file)")
        pos = end
    if pos != len(body):
        raise CheckpointError(f"{name!r}: the file size does not match its header (truncated or corrupt file)")
    return fields, entries, body


def _read_tensor(body: memoryview, shape: tuple, begin: int, end: int) -> torch.Tensor:
    """The float32 tensor of `shape` stored at body[begin:end] (a copy: the file's bytes may go)."""
    if begin == end:
        return torch.zeros(shape, dtype=torch.float32)
    return torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32).reshape(shape)


def _json_field(fields: dict, key: str, name: str):
    """The JSON value of metadata field `key`, bounded in size; CheckpointError when missing or bad."""
    raw = fields.get(key)
    if raw is None:
        raise CheckpointError(f"{name!r} has no {key!r} in its metadata: not a caracal-viz checkpoint")
    if len(raw) > MAX_METADATA_FIELD:
        raise CheckpointError(f"{name!r}: the {key!r} metadata is too large")
    try:
        return _loads_json(raw)
    except ValueError:
        raise CheckpointError(f"{name!r}: the {key!r} metadata is not valid JSON") from None


def parse_fields(fields: dict[str, str], name: str) -> tuple[ModelConfig, dict]:
    """Check the (text) metadata fields; returns the model config and the training record."""
    if fields.get("format") != FORMAT:
        raise CheckpointError(f"{name!r} is not a caracal-viz checkpoint (metadata 'format' is "
                              f"{str(fields.get('format'))[:40]!r}, expected {FORMAT!r})")
    if fields.get("format_version") != FORMAT_VERSION:
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


def check_tensors_fit(config: ModelConfig, shapes: dict[str, tuple], name: str) -> None:
    """The file's tensor names and shapes must be exactly the config's, checked before any
    tensor data is copied."""
    with torch.device("meta"):  # shapes only: a config cannot make us allocate before it is checked
        expected = {k: tuple(v.shape) for k, v in ByteLM(config).state_dict().items() if k != TIED}
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise CheckpointError(f"{name!r} is missing {len(missing)} tensor(s) the config needs, e.g. {missing[0]!r}: "
                              "the weights do not belong to this config")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise CheckpointError(f"{name!r} has {len(extra)} tensor(s) the config does not use, e.g. {extra[0][:60]!r}: "
                              "the weights do not belong to this config")
    for k, shape in expected.items():
        if tuple(shapes[k]) != shape:
            raise CheckpointError(f"{name!r}: tensor {k!r} has shape {tuple(shapes[k])}, the config needs "
                                  f"{shape}: the weights do not belong to this config")


def build_model(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> ByteLM:
    """A ByteLM of `config` holding `tensors` (already checked by check_tensors_fit; the tied head
    from tok_emb.weight), on the CPU, in training mode as constructed."""
    model = ByteLM(config)
    model.load_state_dict({**tensors, TIED: tensors["tok_emb.weight"]}, strict=True)
    return model
