"""Shared fixtures: the real shipped checkpoints, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_checkpoints"
SAMPLE_NAMES = ("caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky", "fftnet-shakespeare")
CAUSAL_SAMPLES = ("caracal-shakespeare", "caracal-periodic")
LEAKY_SAMPLES = ("caracal-circular-leaky", "fftnet-shakespeare")


def sample_path(name: str) -> Path:
    return SAMPLES / f"{name}.safetensors"


_cache: dict = {}


def load_sample(name: str, device: str = "cpu"):
    """A shipped checkpoint, loaded once per session and device (tests must not mutate it)."""
    from caracal_viz import load_checkpoint

    key = (name, device)
    if key not in _cache:
        _cache[key] = load_checkpoint(sample_path(name), device=device)
    return _cache[key]


def figure_strings(obj):
    """Every string in a figure's dict (fig.to_dict() / to_plotly_json()), recursively, keys
    excluded; numeric arrays are skipped whole (a large heatmap holds no string)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from figure_strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from figure_strings(v)
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "OUS":
        for v in obj.ravel():
            yield from figure_strings(v)


@pytest.fixture(params=SAMPLE_NAMES)
def any_sample(request):
    return load_sample(request.param)
