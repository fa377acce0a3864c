"""Shared helpers for the benchmark scripts: timing, machine description, tables, JSON logs.

Timing: CUDA events around each repetition on the GPU, perf_counter on the CPU; warm-up runs
first; the reported number is the median of the repetitions.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def machine(device: str) -> str:
    """One line naming the machine: GPU model and driver, or CPU model and cores, plus torch."""
    if device == "cuda":
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            smi = torch.cuda.get_device_name()
        return f"{smi}; torch {torch.__version__} (CUDA {torch.version.cuda}); Python {platform.python_version()}"
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; torch {torch.__version__}; Python {platform.python_version()}"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench(fn, device: str, *, warmup: int = 2, min_reps: int = 5, max_reps: int = 50,
          budget_s: float = 1.0, after=None) -> dict:
    """Median time of fn() in milliseconds. `after` runs between repetitions, outside the timing.
    Repetitions: as many as fit in budget_s (between min_reps and max_reps)."""
    for _ in range(warmup):
        fn()
        if after:
            after()
    sync(device)
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < max_reps:
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        if after:
            after()
        if len(times) >= min_reps and time.perf_counter() - start_all > budget_s:
            break
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": len(times)}


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    """A GitHub-markdown table of rows (dicts) with (key, header) columns."""
    def fmt(v):
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return "-" if v is None else str(v)
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join(out)


def save(name: str, payload: dict) -> None:
    """Write payload as JSON to $OUT/name.json (the device run) or out/name.json (here)."""
    folder = Path(os.environ.get("OUT") or ROOT / "out")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str))


def command() -> str:
    """The command line that runs this benchmark, as typed from the repository root."""
    return f"python3 -m benchmarks.{Path(sys.argv[0]).stem} {' '.join(sys.argv[1:])}".rstrip()


def header(title: str, device: str) -> str:
    """A markdown heading for a result table: title, machine, date (UTC) and command."""
    return (f"## {title}\nmachine: {machine(device)}\ndate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"command: {command()}\n")


def copy_bandwidth(device: str, gib: float = 2.0) -> float:
    """Measured device-to-device copy bandwidth in bytes/s, counting bytes read plus written."""
    n = int(gib * 2**30) // 4
    a = torch.randn(n, device=device)
    b = torch.empty_like(a)
    t = bench(lambda: b.copy_(a), device, warmup=3, min_reps=10, budget_s=1.0)
    return 2 * n * 4 / (t["median_ms"] / 1e3)
