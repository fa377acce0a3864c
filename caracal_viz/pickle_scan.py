"""Static checks of a .pt checkpoint archive before torch.load sees it: `check_pt_archive`.

torch.load(weights_only=True) had real holes (CVE-2025-32434, CVE-2026-24747), so the loader does
not rely on its unpickler alone. A .pt file is accepted only when it passed checks of our own:
uncompressed entries only, one pickle, and a static walk of that pickle's opcodes (nothing is
executed) that allows a handful of opcodes and three globals, checks every storage against its
record and bounds the size of the object graph (a few hundred bytes of nested references can
otherwise keep torch.load busy for hours).
"""

from __future__ import annotations

import io
import pickletools
import zipfile

from models.checkpoint_format import MAX_HEADER_BYTES, CheckpointError

# Objects in a .pt pickle counted with every shared reference expanded: a real checkpoint has
# ~20 per tensor; 10^10 (a 1.5 KB file of nested tuples) keeps torch.load hashing for hours.
MAX_PICKLE_OBJECTS = 1_000_000


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


def check_pt_archive(data: bytes, name: str) -> None:
    """Refuse (CheckpointError) a .pt file's bytes unless they are a zip archive as torch.save
    writes it: one folder, one data.pkl, uncompressed records, and a pickle that `_scan_pickle`
    accepts. Reads only the archive's directory and data.pkl; runs nothing."""
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
