"""Shared fixtures: the real shipped checkpoints, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(params=SAMPLE_NAMES)
def any_sample(request):
    return load_sample(request.param)
