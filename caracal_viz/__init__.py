"""caracal-viz: the spectral microscope for Fourier-mixing language models.

`from caracal_viz import load_checkpoint` (also Checkpoint, CheckpointError, save_checkpoint)
works as always, but the checkpoint module, and torch with it, is imported only when one of those
names is first used: `caracal_viz.figures` and `caracal_viz.results` stay torch-free."""

import importlib

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".checkpoint", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
