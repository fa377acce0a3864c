"""The PyTorch models that caracal-viz runs and explains (see models/lm.py)."""

from .config import ConfigError, ModelConfig
from .internals import MixerInternals
from .lm import ByteLM
from .tokenizer import ByteTokenizer

__all__ = ["ByteLM", "ByteTokenizer", "ConfigError", "MixerInternals", "ModelConfig"]
