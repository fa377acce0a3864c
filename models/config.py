"""Model configuration: one frozen dataclass, validated, round-tripped through JSON.

The config travels inside every checkpoint, so `ModelConfig.from_dict` is the first line of
defence against a malformed upload: unknown keys, missing keys, wrong types and values out of
range all raise `ConfigError` with a message that names the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MIXERS = ("mhf", "fftnet", "attention")
CAUSAL_MODES = ("pad", "circular", "two_sided")


class ConfigError(ValueError):
    """A model config that cannot describe a valid model."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from its weights.

    mixer:           "mhf" (Caracal's Multi-Head Fourier), "fftnet" (FFTNet adaptive spectral
                     filter, not causal) or "attention" (plain causal Transformer baseline).
    vocab_size:      256: the models are byte level.
    d_model:         residual width D.
    n_layers:        number of blocks.
    n_heads:         H; D must be divisible by H.
    context:         training context C in bytes. The MHF learned spectrum has C + 1 one-sided
                     bins (an rfft of size 2C), so its causal time kernel has C lags.
    mlp_ratio:       hidden width of the MLP is mlp_ratio * D.
    dropout:         dropout probability used during training only.
    spectral_filter: mhf only: multiply the learned per-head spectrum into the FFT product.
    modrelu:         mhf only: pass the learned spectrum through modReLU gates.
    causal_mode:     mhf only: "pad" (exact causal FFT convolution), "circular" (no padding:
                     wrap-around leak) or "two_sided" (no causal mask on the learned kernel).
    swa_every:       0 for none; otherwise every swa_every-th block (1-based) is sliding-window
                     attention, e.g. 3 gives Caracal's hybrid "MHF, MHF, SWA" pattern.
    swa_window:      window of the sliding-window attention layers, in tokens.
    """

    mixer: str = "mhf"
    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    context: int = 512
    mlp_ratio: int = 4
    dropout: float = 0.0
    spectral_filter: bool = True
    modrelu: bool = True
    causal_mode: str = "pad"
    swa_every: int = 0
    swa_window: int = 256

    def __post_init__(self) -> None:
        if self.mixer not in MIXERS:
            raise ConfigError(f"unknown mixer {self.mixer!r}: expected one of {', '.join(MIXERS)}")
        if self.causal_mode not in CAUSAL_MODES:
            raise ConfigError(
                f"unknown causal_mode {self.causal_mode!r}: expected one of {', '.join(CAUSAL_MODES)}"
            )
        if self.vocab_size != 256:
            raise ConfigError(f"vocab_size must be 256 (byte-level models), got {self.vocab_size}")
        for name in ("d_model", "n_layers", "n_heads", "context", "mlp_ratio", "swa_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.swa_every < 0:
            raise ConfigError(f"swa_every must be >= 0, got {self.swa_every}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.d_model > 8192 or self.n_layers > 256 or self.context > 1 << 20 or self.mlp_ratio > 16:
            raise ConfigError("config sizes are implausibly large (d_model, n_layers, context or mlp_ratio)")

    @property
    def head_dim(self) -> int:
        """Channels per head, d_model // n_heads."""
        return self.d_model // self.n_heads

    @property
    def is_causal(self) -> bool:
        """True when the architecture guarantees that no output depends on a later token."""
        if self.mixer == "fftnet":
            return False
        if self.mixer == "mhf":
            return self.causal_mode == "pad"
        return True

    def layer_kind(self, i: int) -> str:
        """The mixer of block i (0-based): the config's mixer, or "swa" for hybrid layers."""
        if self.mixer == "mhf" and self.swa_every and (i + 1) % self.swa_every == 0:
            return "swa"
        return self.mixer

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (the checkpoint stores it; `from_dict` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ModelConfig:
        """Build a config from untrusted JSON data, checking keys and types strictly."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(map(str, unknown))}")
        missing = sorted(set(fields) - set(d))
        if missing:
            raise ConfigError(f"missing config key(s): {', '.join(missing)}")
        for name, f in fields.items():
            value, want = d[name], f.type
            ok = {
                "int": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, (int, float)) and not isinstance(value, bool),
                "bool": isinstance(value, bool),
                "str": isinstance(value, str),
            }[want]
            if not ok:
                raise ConfigError(f"config key {name!r} must be {want}, got {type(value).__name__} {value!r}"[:200])
        return cls(**d)
