"""The command line: `python -m caracal_viz check|report|analyze|attribute`.

  check CKPT [--text-file F] [--json] [--precision float32|bf16] [--lengths 16,512] [--trials 3]
        [--seed 0] [--device D]
      the causality certificate (caracal_viz.causality) and the Parseval check
  report CKPT --text-file F --out report.html [--device D]
      one self-contained offline HTML report (caracal_viz.report.write_report)
  analyze CKPT --text-file F --out DIR [--device D]
      every analysis array as DIR/analysis.npz plus DIR/summary.json
  attribute CKPT --text-file F --position I [--methods grad_norm,occlusion,...] [--json] [--out F.npz]
      attribution methods side by side for the prediction after position I, with deletion/insertion
      curves, AOPC and rank correlations (caracal_viz.attribution.attribute)
  ablate CKPT --text-file F [--layer K] [--head H] [--band LO HI] [--json] | --sweep --out F.csv
      bits/byte before and after an intervention (caracal_viz.interventions), or the whole
      layer x head x band sweep as CSV
  extrapolate CKPT [CKPT ...] --text-file F [--length L] [--windows W] [--json]
      bits/byte per position bin (log-spaced: 0-64, 64-128, ...) of each checkpoint on windows of
      the text scored from their first byte, past the training context too (caracal_viz.extrapolate)

Exit codes: 0 success (check: the checkpoint is certified causal), 1 check found a leak,
2 bad input (missing file, bad checkpoint, bad text, bad arguments), 3 an internal failure,
4 cannot certify: NaN/Inf in the weights or the activations (check prints where it first appears;
report and analyze still write their output, with the NaN views marked, and exit 4; attribute,
ablate and extrapolate on a checkpoint whose weights hold NaN/Inf print their NaN results with a line naming the
tensors, "nonfinite_weights" in --json, and exit 4).
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np

from .attribution import (DEFAULT_BASELINE_BYTE, METHOD_NAMES, METHODS, AttributionReport, attribute, check_methods,
                          order_of)
from .causality import CANNOT, CAUSAL, PRECISIONS, CausalityReport, causality_report
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .compare import CompareError
from .energy import ParsevalReport, parseval_report
from .export import npz_bytes, rows_csv_bytes
from .extrapolate import Extrapolation, extrapolate
from .filters import data_kernels, fftnet_filters, learned_filters
from .gates import gate_report
from .impulse import kernel_impulses
from .text import TextError, decode_text_file, encode_text, max_text_bytes
from .trace import Trace, forward_pass, trace_of

EXIT_OK, EXIT_LEAK, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_CANNOT_CERTIFY = 0, 1, 2, 3, 4
EXTRAPOLATE_WINDOWS = 8  # extrapolate --length without --windows: at most this many, not overlapping
DEFAULT_CHECK_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
                      "abcabcabc 0123456789 \u00e9\u00e8 \u2603\n")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage block and exit by itself
        raise UsageError(f"{message} (see {self.prog} --help)")  # prog: the command, or the command and its subcommand


def _int_at_least(minimum: int, expected: str):
    """An argparse type: an integer >= minimum, else a one-line error naming what was expected."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return n
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, "a byte position (an integer >= 0)")


def _lengths(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 16,512, got {value!r}") from None
    if not out or min(out) < 2:
        raise argparse.ArgumentTypeError(f"every length must be an integer >= 2, got {value!r}")
    return out


def _methods(value: str) -> tuple[str, ...]:
    try:
        return check_methods([v.strip() for v in value.split(",") if v.strip()])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _byte(value: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        n = -1
    if not 0 <= n <= 255:
        raise argparse.ArgumentTypeError(f"expected a byte value 0..255 (such as 32 or 0x20), got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser: the subcommands check, report, analyze, attribute, ablate and extrapolate."""
    parser = _Parser(prog="python3 -m caracal_viz",
                     description="caracal-viz: the spectral microscope for Fourier-mixing language models")
    sub = parser.add_subparsers(dest="command", metavar="{check,report,analyze,attribute,ablate,extrapolate}")
    sub.required = True

    def common(p: argparse.ArgumentParser, text_required: bool) -> None:
        p.add_argument("checkpoint", help="a caracal-viz checkpoint (.safetensors or .pt)")
        p.add_argument("--text-file", required=text_required, help="UTF-8 text to analyse")
        p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where to run the model (auto: CUDA when available)")

    check = sub.add_parser("check", help="causality certificate and Parseval check "
                                         "(exit 0 causal, 1 leaks, 4 cannot certify: NaN/Inf)")
    common(check, text_required=False)
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.add_argument("--precision", choices=tuple(PRECISIONS), default="float32",
                       help="float32 (default) or bf16 autocast (CUDA only, as training runs)")
    check.add_argument("--lengths", type=_lengths, default=None,
                       help="sequence lengths to perturb, e.g. 16,512 (default: the plan every view shows)")
    check.add_argument("--trials", type=_positive_int, default=None, help="random sequences per length")
    check.add_argument("--seed", type=int, default=0, help="seed of the random sequences")

    report = sub.add_parser("report", help="write a self-contained offline HTML report")
    common(report, text_required=True)
    report.add_argument("--out", required=True, help="the HTML file to write")

    analyze = sub.add_parser("analyze", help="write every analysis array (.npz) and a JSON summary")
    common(analyze, text_required=True)
    analyze.add_argument("--out", required=True, help="the folder to write analysis.npz and summary.json to")

    attr = sub.add_parser("attribute", help="attribution methods and their faithfulness for one prediction")
    common(attr, text_required=True)
    attr.add_argument("--position", type=_nonnegative_int, required=True,
                      help="explain the prediction made after this byte (0 .. text bytes - 2)")
    attr.add_argument("--methods", type=_methods, default=None,
                      help=f"comma-separated, from {','.join(METHODS)} (default: all)")
    attr.add_argument("--baseline-byte", type=_byte, default=DEFAULT_BASELINE_BYTE,
                      help="the byte put in by occlusion, the curves and the IG baseline (0..255; default 32, a space)")
    attr.add_argument("--json", action="store_true", help="print every score, curve and AOPC as JSON")
    attr.add_argument("--out", default=None, help="also write every array to this .npz file")

    ablate = sub.add_parser("ablate", help="bits/byte before and after ablating a head or a band (or --sweep)")
    common(ablate, text_required=True)
    ablate.add_argument("--layer", type=int, help="block index (0-based); alone: every head of its mixer zeroed")
    ablate.add_argument("--head", type=int, help="head index (0-based) within the block")
    ablate.add_argument("--band", type=float, nargs=2, metavar=("LO", "HI"),
                        help="stop this band (cycles/token, 0..0.5) of the head's learned spectrum")
    ablate.add_argument("--stream", choices=("spectrum", "gate"), default="spectrum",
                        help="with --band: the learned spectrum (keeps causality) or the gate stream")
    ablate.add_argument("--pass-band", action="store_true", help="with --band: keep only the band instead")
    ablate.add_argument("--mode", choices=("zero", "mean"), default="zero", help="head ablation: zero or the mean")
    ablate.add_argument("--circular", action="store_true", help="switch block --layer to causal_mode circular")
    ablate.add_argument("--position", type=int, help="position of the top-k lists (default: largest change)")
    ablate.add_argument("--json", action="store_true", help="print the result as JSON")
    ablate.add_argument("--sweep", action="store_true", help="ablate every head and every band of every block")
    ablate.add_argument("--bands", type=_positive_int, default=8, help="with --sweep: log-spaced bands per head")
    ablate.add_argument("--out", help="with --sweep: the CSV file to write")

    ext = sub.add_parser("extrapolate", help="bits/byte per position bin of each checkpoint, past its training context")
    ext.add_argument("checkpoints", nargs="+", metavar="checkpoint", help="caracal-viz checkpoints to compare")
    ext.add_argument("--text-file", required=True, help="UTF-8 text to score (at most the text limit)")
    ext.add_argument("--length", type=_positive_int, default=None,
                     help="predicted bytes per window (default: the whole text, one window)")
    ext.add_argument("--windows", type=_positive_int, default=None,
                     help="windows of --length bytes spread over the text (default: as many as fit without overlap)")
    ext.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="where to run the models (auto: CUDA when available)")
    ext.add_argument("--json", action="store_true", help="print every checkpoint's bins as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default sys.argv[1:]) and return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "extrapolate":  # several checkpoints
            return _extrapolate(args)
        ck = _load(args.checkpoint, args.device)
        return {"check": _check, "report": _report, "analyze": _analyze,
                "attribute": _attribute, "ablate": _ablate}[args.command](ck, args)
    except (UsageError, CheckpointError, TextError, CompareError, ValueError) as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as e:  # the last line of defence: one line, never a traceback
        return _fail(f"internal error ({type(e).__name__}: {e}); please report it", EXIT_INTERNAL)


def _fail(message: str, code: int) -> int:
    print(f"caracal-viz: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _load(path: str, device: str) -> Checkpoint:
    return load_checkpoint(path, device=None if device == "auto" else device)


def _read_text(path: str | None) -> str:
    if path is None:
        return DEFAULT_CHECK_TEXT
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no text file at {path!r}: check the path")
    limit = max_text_bytes()
    size = p.stat().st_size
    if size > limit + 3:  # + a UTF-8 byte order mark, which is dropped
        raise TextError(f"{p.name} is {size} bytes, over the limit of {limit} bytes: shorten it "
                        "(or raise CARACAL_MAX_TEXT_BYTES if your machine can hold it)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None
    text = decode_text_file(data, p.name)
    encode_text(text)
    return text


# ---- check ------------------------------------------------------------------------------------
def _check(ck: Checkpoint, args) -> int:
    text = _read_text(args.text_file)
    report = causality_report(ck, precision=args.precision, lengths=args.lengths, trials=args.trials,
                              seed=args.seed)
    fwd = forward_pass(ck, text)
    trace = trace_of(ck, fwd)
    parseval = parseval_report(ck, fwd)
    if args.json:
        print(json.dumps(_jsonable(check_summary(ck, report, parseval, trace)), indent=2, allow_nan=False))
    else:
        print(_check_text(ck, report, parseval, trace))
    return verdict_exit_code(report)


def verdict_exit_code(report: CausalityReport) -> int:
    """EXIT_OK for causal, EXIT_LEAK for leaks, EXIT_CANNOT_CERTIFY for NaN/Inf."""
    return {CAUSAL: EXIT_OK, CANNOT: EXIT_CANNOT_CERTIFY}.get(report.verdict, EXIT_LEAK)


def check_summary(ck: Checkpoint, report: CausalityReport, parseval: ParsevalReport, trace: Trace) -> dict:
    """The JSON-ready result of `check` (also part of `analyze`'s summary)."""
    return {
        "checkpoint": ck.name, "sha256": ck.sha256, "device": str(ck.device), "config": ck.config.to_dict(),
        "verdict": report.verdict, "headline": report.headline, "causal": report.causal,
        "config_causal": report.config_causal, "nonfinite_from": report.nonfinite,
        "nonfinite_weights": list(ck.nonfinite), "precision": report.precision,
        "model_leak": report.model_leak, "model_response": report.model_response, "floor": report.floor,
        "floor_ratio": report.floor_ratio, "floor_factor": report.floor_factor, "relative_leak": report.relative_leak,
        "lengths": report.lengths, "trials": {str(k): v for k, v in report.trials.items()},
        "perturbations": report.perturbations, "max_length": report.max_length,
        "leak_by_length": {str(k): v for k, v in report.leak_by_length.items()},
        "floor_by_length": {str(k): v for k, v in report.floor_by_length.items()},
        "per_layer": [{"layer": p.layer, "kind": p.kind, "causal_mode": p.causal_mode, "verdict": p.verdict,
                       "causal": p.causal, "structure": p.structure.status, "structure_text": p.structure.text,
                       "leak": p.leak, "response": p.response, "floor": p.floor, "relative_leak": p.relative_leak,
                       "floor_ratio": p.floor_ratio, "lengths": p.lengths, "worst_offset": p.worst_offset,
                       "source": p.source} for p in report.per_layer],
        "coverage": report.coverage, "rule": report.rule, "seconds": report.seconds, "summary": report.summary,
        "parseval": {"ok": parseval.ok, "max_rel_error": parseval.max_rel_error, "tolerance": parseval.tolerance,
                     "text_bytes": int(trace.ids.size)},
        "nonfinite": [{"where": n.where, "n_nan": n.n_nan, "n_inf": n.n_inf, "positions": n.positions[:20]}
                      for n in trace.nonfinite],
    }


def _check_text(ck: Checkpoint, report: CausalityReport, parseval: ParsevalReport, trace: Trace) -> str:
    cfg = ck.config
    lines = [f"{ck.name}: {cfg.mixer}, {cfg.n_layers} blocks, {cfg.n_heads} heads, context {cfg.context}"
             + (f", causal_mode {cfg.causal_mode}" if cfg.mixer == "mhf" else "") + f" (on {ck.device})",
             f"causality: {report.headline.upper() if report.verdict != CAUSAL else report.headline}: "
             f"max earlier-logit change {report.model_leak:.3g} of a response {report.model_response:.3g}, "
             f"rounding floor {report.floor:.2g} ({report.precision_text}; a leak is > {report.floor_factor:g} floors)",
             f"  covered: {report.coverage} ({report.seconds:.1f} s)"]
    for p in report.per_layer:
        lines.append(f"  block {p.layer} {p.kind} {p.causal_mode}: {p.verdict.upper()}: leak {p.leak:.3g} "
                     f"(relative {p.relative_leak:.2g}, {p.floor_ratio:.3g} floors): {p.source}")
    parseval_verdict = "ok" if parseval.ok else "not checked (NaN/Inf)" if np.isnan(parseval.max_rel_error) else "FAILED"
    lines.append(f"parseval: {parseval_verdict}: max relative time/frequency energy difference "
                 f"{parseval.max_rel_error:.2g} (tolerance {parseval.tolerance:.0e}) on {trace.ids.size} bytes")
    for n in trace.nonfinite:
        lines.append(f"NaN/Inf: {n.where}: {n.n_nan} NaN, {n.n_inf} Inf at positions {n.positions[:10].tolist()}")
    lines.append(report.summary)
    return "\n".join(lines)


# ---- report -----------------------------------------------------------------------------------
def _report(ck: Checkpoint, args) -> int:
    text = _read_text(args.text_file)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {args.out!r}: the folder {str(out.parent)!r} does not exist")
    try:
        from .report import write_report
    except ImportError as e:
        return _fail(f"the HTML report is not available in this installation ({e})", EXIT_INTERNAL)
    cert = causality_report(ck)
    write_report(ck, text, out, certificate=cert)
    print(f"wrote {out}" + (f" ({cert.headline}: the NaN views are marked)" if cert.verdict == CANNOT else ""))
    return EXIT_CANNOT_CERTIFY if cert.verdict == CANNOT else EXIT_OK


# ---- analyze ----------------------------------------------------------------------------------
def _analyze(ck: Checkpoint, args) -> int:
    text = _read_text(args.text_file)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file: give a folder")
    start = time.perf_counter()
    arrays, summary = analyze(ck, text)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "analysis.npz").write_bytes(npz_bytes(**arrays))
        (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write to {args.out!r}: {e.strerror}") from None
    print(f"wrote {out / 'analysis.npz'} ({len(arrays)} arrays) and {out / 'summary.json'} "
          f"in {summary['seconds']:.2f} s" + (f" ({summary['headline']}: see summary.json)"
                                              if summary["verdict"] == CANNOT else ""))
    return EXIT_CANNOT_CERTIFY if summary["verdict"] == CANNOT else EXIT_OK


def analyze(ck: Checkpoint, text: str) -> tuple[dict[str, np.ndarray], dict]:
    """Every analysis of `ck` on `text`: (arrays named "<part>.<field>" or "block<i>.<part>.<field>",
    a JSON-ready summary)."""
    fwd = forward_pass(ck, text)  # the one pass every analysis of the text reads
    trace = trace_of(ck, fwd)
    L = int(trace.ids.size)
    arrays: dict[str, np.ndarray] = {"trace.ids": trace.ids, "trace.logits": trace.logits}
    parts = {
        "filters": learned_filters(ck), "data_kernels": data_kernels(ck, fwd),
        "fftnet": fftnet_filters(ck, fwd), "gates": gate_report(ck, fwd),
        "impulse": kernel_impulses(ck, L),
    }
    parseval = parseval_report(ck, fwd)
    parts["energy"] = parseval.layers
    causality = causality_report(ck)
    parts["causality"] = causality.per_layer
    for part, layers in parts.items():
        for i, rec in enumerate(layers):
            if rec is not None:
                arrays.update(_arrays_of(f"block{i}.{part}", rec))
    gates = parts["gates"]
    summary = check_summary(ck, causality, parseval, trace)
    summary["text_bytes"] = L
    summary["blocks"] = [{
        "kind": ck.config.layer_kind(i),
        "dead_heads": None if gates[i] is None else np.flatnonzero(gates[i].dead).tolist(),
        "open_fraction": None if gates[i] is None else gates[i].open_fraction,
        "passed_fraction": None if gates[i] is None else gates[i].passed_fraction,
        "masked_fraction": None if parts["impulse"][i] is None else parts["impulse"][i].masked_fraction,
        "energy_gain": None if parseval.layers[i] is None else parseval.layers[i].energy_gain,
    } for i in range(ck.config.n_layers)]
    summary["arrays"] = {k: list(v.shape) for k, v in arrays.items()}
    summary["nonfinite_arrays"] = [k for k, v in arrays.items()
                                   if np.issubdtype(v.dtype, np.number) and not np.isfinite(v).all()]
    return arrays, summary


# ---- attribute --------------------------------------------------------------------------------
def _attribute(ck: Checkpoint, args) -> int:
    text = _read_text(args.text_file)
    out = Path(args.out) if args.out else None
    if out is not None and not out.name.endswith(".npz"):
        out = out.with_name(out.name + ".npz")  # the name np.savez has always given it
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"cannot write {args.out!r}: the folder {str(out.parent)!r} does not exist")
    rep = attribute(ck, text, args.position, args.methods, baseline_byte=args.baseline_byte)
    if out is not None:
        try:
            out.write_bytes(npz_bytes(**rep.arrays()))
        except OSError as e:
            raise UsageError(f"cannot write {args.out!r}: {e.strerror}") from None
    if args.json:
        print(json.dumps(_jsonable(attribution_summary(ck, rep)), indent=2, allow_nan=False))
    else:
        print(_attribution_text(ck, rep))
    return _weights_exit(ck, args)


def _weights_exit(ck: Checkpoint, args) -> int:
    """EXIT_OK, or EXIT_CANNOT_CERTIFY after a line naming the NaN/Inf weights (text output only:
    --json carries them as "nonfinite_weights") when the checkpoint holds any."""
    if not ck.nonfinite:
        return EXIT_OK
    if not args.json:
        print(f"NaN/Inf: {ck.nonfinite_text}")
    return EXIT_CANNOT_CERTIFY


def attribution_summary(ck: Checkpoint, rep: AttributionReport) -> dict:
    """The JSON-ready result of `attribute`: every score, curve, AOPC and the rank correlations."""
    return {
        "checkpoint": ck.name, "sha256": ck.sha256, "device": str(ck.device), "causal": rep.causal,
        "text_bytes": int(rep.ids.size), "position": rep.position, "target": rep.target,
        "target_label": rep.labels[rep.position + 1], "baseline_byte": rep.baseline_byte,
        "nonfinite_weights": list(ck.nonfinite),
        "logp": rep.logp, "logp_baseline": rep.logp_baseline, "normalisation": rep.normalisation,
        "methods": {n: {"unit": a.unit, "signed": a.signed, "absolute": a.absolute, "normalised": a.normalised,
                        "future_max": a.future_max, "scale": a.scale, "future_rel": a.future_rel,
                        "delta": a.delta, "steps": a.steps} for n, a in rep.methods.items()},
        "ks": rep.ks, "deletion": rep.deletion, "insertion": rep.insertion,
        "aopc_deletion": rep.aopc_deletion, "aopc_insertion": rep.aopc_insertion,
        "correlation": {"methods": list(rep.methods), "over": rep.correlation_over, "spearman": rep.correlation},
        "seconds": rep.seconds,
    }


def _attribution_text(ck: Checkpoint, rep: AttributionReport) -> str:
    lab = rep.labels
    lines = [f"{ck.name} on {ck.device}: the prediction after position {rep.position} ({lab[rep.position]!r}) of "
             f"{lab[rep.position + 1]!r}: log p {rep.logp:.4f} nats (baseline text of byte value {rep.baseline_byte}: "
             f"{rep.logp_baseline:.4f})"]
    for n, a in rep.methods.items():
        top = order_of(a.ranking)[:5].tolist()
        lines.append(f"  {METHOD_NAMES[n]:<24} top: " + ", ".join(f"{j} {lab[j]!r} {a.signed[j]:.3g}" for j in top)
                     + f"; after the prediction max {a.future_max:.2g} ({a.future_rel:.2g} of the scale)"
                     + ("" if a.delta is None else f"; IG delta {a.delta:.2g} ({a.steps} steps)"))
    lines.append(f"  {'method':<24} {'deletion AOPC':>14} {'insertion AOPC':>15}  (nats; higher is more faithful)")
    for n in rep.deletion:
        lines.append(f"  {METHOD_NAMES[n]:<24} {rep.aopc_deletion[n]:>14.4f} {rep.aopc_insertion[n]:>15.4f}")
    return "\n".join(lines)
# ---- ablate -----------------------------------------------------------------------------------
def _ablate(ck: Checkpoint, args) -> int:
    from . import interventions as iv

    text = _read_text(args.text_file)
    if args.sweep:
        return _sweep(ck, text, args, iv)
    if args.out:
        raise UsageError("--out goes with --sweep (a single intervention prints its result)")
    if args.layer is None:
        raise UsageError("give --layer K (and --head H, --band LO HI), or --sweep --out F.csv")
    if args.circular:
        res = iv.switch_to_circular(ck, text, args.layer, position=args.position)
    elif args.band is not None:
        if args.head is None:
            raise UsageError("--band needs --head: a band is stopped in one head's spectrum")
        res = iv.filter_band(ck, text, args.layer, args.head, tuple(args.band), stream=args.stream,
                             mode="pass" if args.pass_band else "stop", position=args.position)
    elif args.head is not None:
        res = iv.ablate_head(ck, text, args.layer, args.head, args.mode, position=args.position)
    else:
        hooks = [h for head in range(ck.config.n_heads) for h in iv.head_hooks(ck, args.layer, head, args.mode, text)]
        res = iv.run_intervention(ck, text, hooks, f"block {args.layer} mixer {args.mode}-ablated (every head)",
                                  position=args.position)
    summary = {
        "checkpoint": ck.name, "intervention": res.description, "text_bytes": len(res.labels),
        "bits_per_byte_before": res.bits_before, "bits_per_byte_after": res.bits_after, "change": res.delta_bits,
        "position": res.position, "topk_before": [{"byte": lab, "probability": p} for lab, p in res.topk_before],
        "topk_after": [{"byte": lab, "probability": p} for lab, p in res.topk_after],
        "causal_after": None if res.certificate is None else res.certificate.causal,
        "certificate": None if res.certificate is None else res.certificate.summary,
        "nonfinite_weights": list(ck.nonfinite),
    }
    if args.json:
        print(json.dumps(_jsonable(summary), indent=2, allow_nan=False))
        return _weights_exit(ck, args)
    top = lambda pairs: ", ".join(f"{lab!r} {p:.3f}" for lab, p in pairs)  # noqa: E731
    print(f"{ck.name}: {res.description}")
    print(f"bits/byte: before {res.bits_before:.4f}, after {res.bits_after:.4f} (change {res.delta_bits:+.4f}) "
          f"on {len(res.labels)} bytes")
    print(f"position {res.position}: top-{len(res.topk_before)} before {top(res.topk_before)}")
    print(f"position {res.position}: top-{len(res.topk_after)} after  {top(res.topk_after)}")
    if res.certificate is not None:
        print(f"certificate of the intervened model: {res.certificate.summary}")
    return _weights_exit(ck, args)


def _sweep(ck: Checkpoint, text: str, args, iv) -> int:
    if not args.out:
        raise UsageError("--sweep needs --out F.csv (the file to write the sweep to)")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {args.out!r}: the folder {str(out.parent)!r} does not exist")
    start = time.perf_counter()
    result = iv.sweep(ck, text, n_bands=args.bands)
    seconds = time.perf_counter() - start
    rows = result.rows()
    try:
        out.write_bytes(rows_csv_bytes(rows))
    except OSError as e:
        raise UsageError(f"cannot write {args.out!r}: {e.strerror}") from None
    worst = sorted((r for r in rows if np.isfinite(r["delta_bits_per_byte"])),
                   key=lambda r: -r["delta_bits_per_byte"])[:5]
    if args.json:
        print(json.dumps(_jsonable({"checkpoint": ck.name, "bits_per_byte": result.bits_clean, "rows": len(rows),
                                    "out": str(out), "seconds": seconds, "largest": worst,
                                    "nonfinite_weights": list(ck.nonfinite)}), indent=2, allow_nan=False))
        return _weights_exit(ck, args)
    print(f"{ck.name}: {result.bits_clean:.4f} bits/byte on {len(text.encode())} bytes; wrote {len(rows)} rows "
          f"to {out} in {seconds:.2f} s")
    for r in worst:
        band = "" if r["band_lo"] == "" else f" band {r['band_lo']:.4g}..{r['band_hi']:.4g} cycles/token"
        print(f"  block {r['layer']} head {r['head']}{band}: {r['delta_bits_per_byte']:+.4f} bits/byte")
    return _weights_exit(ck, args)


# ---- extrapolate ------------------------------------------------------------------------------
def _extrapolate(args) -> int:
    data = np.frombuffer(_read_text(args.text_file).encode("utf-8"), dtype=np.uint8)
    if args.windows is not None and args.length is None:
        raise UsageError("--windows goes with --length (without it one window covers the whole text)")
    length = args.length if args.length is not None else data.size - 1
    if not 1 <= length < data.size:
        raise UsageError(f"--length {length:,} needs {length + 1:,} bytes but the text has {data.size:,}: "
                         "give a shorter --length")
    windows = args.windows or max(1, min(EXTRAPOLATE_WINDOWS, data.size // (length + 1)))  # no overlap by default
    cks = [_load(path, args.device) for path in args.checkpoints]  # every file checked before any model runs
    results = [extrapolate(ck, data, length=length, n_windows=windows, source=Path(args.text_file).name)
               for ck in cks]
    if args.json:
        print(json.dumps(_jsonable(extrapolation_summary(cks, results)), indent=2, allow_nan=False))
    else:
        print(_extrapolation_text(cks, results))
        for ck in cks:
            if ck.nonfinite:
                print(f"NaN/Inf in {ck.name}: {ck.nonfinite_text}")
    return EXIT_CANNOT_CERTIFY if any(ck.nonfinite for ck in cks) else EXIT_OK


def extrapolation_summary(cks: list[Checkpoint], results: list[Extrapolation]) -> dict:
    """The JSON-ready result of `extrapolate`: per checkpoint its training context, the window
    starts (byte offsets), the mean bits/byte and the log-spaced bins (edges in positions, bin i
    holding positions edges[i]..edges[i+1]-1; bits/byte per bin)."""
    out = []
    for ck, r in zip(cks, results):
        c = r.curve()
        out.append({"checkpoint": ck.name, "sha256": ck.sha256, "device": str(ck.device), "context": r.context,
                    "length": r.length, "window_starts": r.starts, "mean_bits_per_byte": r.mean_bits,
                    "bin_edges": c.edges, "bits_per_byte": c.bits, "nonfinite_weights": list(ck.nonfinite)})
    return {"text": results[0].source, "checkpoints": out}


def _extrapolation_text(cks: list[Checkpoint], results: list[Extrapolation]) -> str:
    r0 = results[0]
    lines = [f"{r0.source}: {r0.n_windows} window{'s' if r0.n_windows > 1 else ''} of {r0.length:,} predicted "
             "bytes, each scored from its first byte; bits/byte by position (* past the training context)"]
    names = [f"{ck.name} (context {r.context:,})" for ck, r in zip(cks, results)]
    width = max(len(n) for n in names)
    lines.append(f"{'positions':<14}" + "".join(f"  {n:>{width}}" for n in names))
    curves = [r.curve() for r in results]
    for k, (lo, hi) in enumerate(zip(curves[0].edges[:-1].tolist(), curves[0].edges[1:].tolist())):
        cells = [f"{c.bits[k]:.4f}{'*' if lo >= r.context else ' '}" for c, r in zip(curves, results)]
        lines.append(f"{f'{lo:,}-{hi:,}':<14}" + "".join(f"  {c:>{width}}" for c in cells))
    lines.append(f"{'all':<14}" + "".join(f"  {r.mean_bits:>{width - 1}.4f} " for r in results))
    return "\n".join(lines)


def _arrays_of(prefix: str, rec) -> dict[str, np.ndarray]:
    out = {}
    for f in fields(rec):
        value = getattr(rec, f.name)
        if isinstance(value, np.ndarray):
            out[f"{prefix}.{f.name}"] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}.{f.name}"] = np.asarray(value)
    return out


def _jsonable(obj):
    """Plain JSON values: numpy to lists, NaN/Inf to None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if is_dataclass(obj):
        return _jsonable({f.name: getattr(obj, f.name) for f in fields(obj)})
    return obj
