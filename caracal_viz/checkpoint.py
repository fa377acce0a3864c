"""The checkpoint format and its loader.

One self-describing file, so that a browser upload is a single file:
- `*.safetensors` (preferred): the weights (float32) plus string metadata
  {"format": "caracal-viz", "format_version": "1", "config": JSON, "tokenizer": JSON,
   "training": JSON}. The header is parsed and checked here before any tensor is read.
- `*.pt`: a dict with the same fields and "state_dict", read only with
  `torch.load(..., weights_only=True)` on torch >= 2.10, and only after the archive passed
  checks of our own that do not rely on torch's unpickler (whose holes were CVE-2025-32434 and
  CVE-2026-24747): uncompressed entries only, one pickle, and a static scan of that pickle that
  allows a handful of opcodes and three globals, checks every storage against its record and
  bounds the size of the object graph (a few hundred bytes of nested references can otherwise
  keep torch.load busy for hours). Nothing is ever unpickled otherwise.

Sizes are checked before anything is allocated: the file against `max_checkpoint_bytes()`
before it is read whole, every tensor against the config's shapes before it is copied.
Every problem raises `CheckpointError` with one line that says what is wrong and what to do.
Weights holding NaN or Inf are not a problem of the file: such a checkpoint loads (after every
other check) with the tensors named in `Checkpoint.nonfinite`, and the analyses say "cannot
certify" where those values reach.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import pickletools
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
# Objects in a .pt pickle counted with every shared reference expanded: a real checkpoint has
# ~20 per tensor; 10^10 (a 1.5 KB file of nested tuples) keeps torch.load hashing for hours.
MAX_PICKLE_OBJECTS = 1_000_000
TIED = "head.weight"  # tied to tok_emb.weight, stored once
DTYPES = {"F32": (torch.float32, 4)}


class CheckpointError(ValueError):
    """A file that is not a usable caracal-viz checkpoint; the message says why, on one line."""


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
        fields, entries, body = _parse_safetensors(data, name)
        config, training = _parse_fields(fields, name)
        _check_tensors_fit(config, {k: shape for k, (shape, _, _) in entries.items()}, name)
        tensors = {k: _read_tensor(body, *entry) for k, entry in entries.items()}
    else:
        fields, tensors = _parse_pt(data, name)
        config, training = _parse_fields(fields, name)
        _check_tensors_fit(config, {k: tuple(v.shape) for k, v in tensors.items()}, name)
    model = _build_model(config, tensors)
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
    if begin == end:
        return torch.zeros(shape, dtype=torch.float32)
    return torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32).reshape(shape)


def _parse_pt(data: bytes, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 10):
        raise CheckpointError(f"loading .pt files needs torch >= 2.10 (this is {torch.__version__}): "
                              "upgrade torch or use the .safetensors file")
    _check_pt_archive(data, name)
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


# A .pt archive is a zip of `<archive>/data.pkl` (the object graph, pickle protocol 2) and one
# raw record `<archive>/data/<key>` per storage. What torch.save writes for a caracal-viz
# checkpoint needs only these opcodes and globals; anything else is refused before torch.load.
_PICKLE_GLOBALS = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage"}
_PICKLE_CONSTANTS = {"NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1",
                     "LONG4", "FLOAT", "BINFLOAT", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
                     "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT"}
_MARK = object()


class _Obj:
    """One object of a scanned pickle: its constant value (None for containers) and the objects
    it refers to, so that the graph can be measured without building it."""

    __slots__ = ("value", "refs")

    def __init__(self, value=None, refs=None):
        self.value, self.refs = value, refs if refs is not None else []


def _check_pt_archive(data: bytes, name: str) -> None:
    bad = f"{name!r} is not a PyTorch checkpoint archive"
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception:  # zipfile raises half a dozen types on damaged input
        raise CheckpointError(f"{bad} (truncated, corrupt or a legacy format): re-save it with torch.save "
                              "or use .safetensors") from None
    names = [i.filename for i in infos]
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1 or len(set(names)) != len(names):
        raise CheckpointError(f"{bad}: it needs exactly one data.pkl and no duplicate entries")
    prefix = pkls[0][: -len("data.pkl")]
    if any(not n.startswith(prefix) for n in names):
        raise CheckpointError(f"{bad}: its entries are not all in one archive folder")
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos) or sum(i.file_size for i in infos) > len(data):
        raise CheckpointError(f"{bad}: it has compressed entries (torch.save never compresses): re-save it "
                              "with torch.save or use .safetensors")
    pkl_info = zf.getinfo(pkls[0])
    if pkl_info.file_size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{bad}: its data.pkl is over {MAX_HEADER_BYTES} bytes")
    try:
        pkl = zf.read(pkl_info)
    except Exception:
        raise CheckpointError(f"{bad}: data.pkl is damaged (truncated or corrupt file)") from None
    records = {i.filename[len(prefix):]: i.file_size for i in infos}
    _scan_pickle(pkl, records, name)


def _scan_pickle(pkl: bytes, records: dict[str, int], name: str) -> None:
    """Walk the pickle's opcodes without executing any, refusing anything a caracal-viz
    checkpoint does not need, storages whose size does not match their record, and object
    graphs that expand to more than MAX_PICKLE_OBJECTS objects."""
    stack: list = []
    memo: dict = {}

    def pop_mark() -> list:
        i = len(stack) - 1 - stack[::-1].index(_MARK)
        items = stack[i + 1:]
        del stack[i:]
        return items

    def top() -> _Obj:
        if not stack or stack[-1] is _MARK:
            raise ValueError("stack underflow")
        return stack[-1]

    def pop() -> _Obj:
        obj = top()
        stack.pop()
        return obj

    try:
        for op, arg, _ in pickletools.genops(pkl):
            kind = op.name
            if kind in _PICKLE_CONSTANTS:
                stack.append(_Obj(arg))
            elif kind in ("PROTO", "FRAME"):
                pass
            elif kind == "STOP":
                break
            elif kind == "MARK":
                stack.append(_MARK)
            elif kind in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(kind[-1])
                items = [pop() for _ in range(n)][::-1]
                stack.append(_Obj(None, items))
            elif kind in ("TUPLE", "LIST", "DICT"):
                items = pop_mark()
                if _MARK in items:
                    raise ValueError("nested mark")
                stack.append(_Obj(None, items))
            elif kind in ("APPEND", "BUILD"):
                item = pop()
                top().refs.append(item)
            elif kind == "SETITEM":
                value, key = pop(), pop()
                top().refs.extend((key, value))
            elif kind in ("APPENDS", "SETITEMS"):
                items = pop_mark()
                top().refs.extend(items)
            elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = top()
            elif kind == "MEMOIZE":
                memo[len(memo)] = top()
            elif kind in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif kind == "GLOBAL":
                if arg.startswith("torch ") and arg.endswith("Storage") and arg not in _PICKLE_GLOBALS:
                    raise CheckpointError(f"{name!r} holds tensors stored as {arg.replace(' ', '.')[:40]}; "
                                          "caracal-viz checkpoints store float32 (convert with .float())")
                if arg not in _PICKLE_GLOBALS:
                    raise CheckpointError(f"{name!r} contains Python objects that need code to load "
                                          f"({arg.replace(' ', '.')[:80]}), and caracal-viz never runs code "
                                          "from a file; save a plain state dict or .safetensors")
                stack.append(_Obj(("global", arg)))
            elif kind == "REDUCE":
                args, fn = pop(), pop()
                if not (isinstance(fn.value, tuple) and fn.value[0] == "global"):
                    raise ValueError("call of a non-global")
                stack.append(_Obj(None, [fn, args]))
            elif kind == "BINPERSID":
                pid = pop()
                _check_storage(pid, records, name)
                stack.append(_Obj(None, [pid]))
            elif kind == "POP":
                pop()
            elif kind == "POP_MARK":
                pop_mark()
            elif kind == "DUP":
                stack.append(top())
            else:
                raise CheckpointError(f"{name!r} uses the pickle instruction {kind}, which caracal-viz "
                                      "checkpoints never contain: save with caracal_viz.save_checkpoint")
        else:
            raise ValueError("no STOP")
        if len(stack) != 1:
            raise ValueError("stack not empty at STOP")
    except CheckpointError:
        raise
    except Exception:  # malformed opcodes, stack or memo misuse: anything from the walk
        raise CheckpointError(f"{name!r}: its data.pkl is damaged (truncated or corrupt file)") from None
    if _expanded_size(stack[0], MAX_PICKLE_OBJECTS) > MAX_PICKLE_OBJECTS:
        raise CheckpointError(f"{name!r} holds an object graph of more than {MAX_PICKLE_OBJECTS:,} objects "
                              "once shared references are expanded: not a caracal-viz checkpoint")


def _check_storage(pid: _Obj, records: dict[str, int], name: str) -> None:
    """A persistent id must be ('storage', torch.FloatStorage, key, location, numel) with a
    record data/<key> of exactly numel float32 values."""
    parts = [r.value for r in pid.refs] if pid.value is None else []
    if (len(parts) != 5 or parts[0] != "storage" or parts[1] != ("global", "torch FloatStorage")
            or not isinstance(parts[2], str) or not isinstance(parts[3], str)
            or type(parts[4]) is not int or parts[4] < 0):
        raise CheckpointError(f"{name!r} refers to a storage that is not float32 tensor data: "
                              "not a caracal-viz checkpoint")
    size = records.get(f"data/{parts[2]}")
    if size != 4 * parts[4]:
        raise CheckpointError(f"{name!r}: storage {parts[2][:20]!r} declares {parts[4]} values but its record "
                              f"{'is missing' if size is None else f'holds {size} bytes'} (truncated or corrupt file)")


def _expanded_size(root: _Obj, cap: int) -> int:
    """Objects reachable from root, counting a shared object once per reference (what str(),
    hash() or == would visit); a reference back into an enclosing object counts 1. Saturates
    at cap + 1. Iterative: the graph can be deeper than Python's recursion limit."""
    done: dict[int, int] = {}
    active = {id(root)}
    todo = [(root, iter(root.refs))]
    while todo:
        obj, refs = todo[-1]
        for ref in refs:
            if id(ref) not in done and id(ref) not in active:
                active.add(id(ref))
                todo.append((ref, iter(ref.refs)))
                break
        else:
            todo.pop()
            active.discard(id(obj))
            done[id(obj)] = min(cap + 1, 1 + sum(done.get(id(r), 1) for r in obj.refs))
    return done[id(root)]


def _json_field(fields: dict, key: str, name: str):
    raw = fields.get(key)
    if raw is None:
        raise CheckpointError(f"{name!r} has no {key!r} in its metadata: not a caracal-viz checkpoint")
    if len(raw) > MAX_METADATA_FIELD:
        raise CheckpointError(f"{name!r}: the {key!r} metadata is too large")
    try:
        return _loads_json(raw)
    except ValueError:
        raise CheckpointError(f"{name!r}: the {key!r} metadata is not valid JSON") from None


def _parse_fields(fields: dict[str, str], name: str) -> tuple[ModelConfig, dict]:
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


def _check_tensors_fit(config: ModelConfig, shapes: dict[str, tuple], name: str) -> None:
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


def _build_model(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> ByteLM:
    model = ByteLM(config)
    model.load_state_dict({**tensors, TIED: tensors["tok_emb.weight"]}, strict=True)
    return model
