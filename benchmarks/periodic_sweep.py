"""Does the intervention sweep point at caracal-periodic's known periods (3, 8, 20)? For each
period P: the sweep (every head zeroed, 8 log-spaced bands stopped per head) averaged over three
texts of a random lowercase pattern of period P repeated to 240 bytes, then, on a fourth, each
head's band 1/P +- 10% stopped against the same width at a control frequency (1.3/P, or 0.7/P
where that would pass 0.5). The numbers behind sample_checkpoints/README.md.

    python3 -m benchmarks.periodic_sweep
"""

from __future__ import annotations

import string

import numpy as np

from benchmarks._util import ROOT
from caracal_viz import interventions as iv
from caracal_viz import load_checkpoint


def main() -> None:
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-periodic.safetensors", device="cpu")
    rng = np.random.default_rng(0)
    H, n = ck.config.n_heads, ck.config.n_layers

    def text_of(P: int) -> str:
        pat = "".join(rng.choice(list(string.ascii_lowercase), P))
        return (pat * (240 // P + 1))[:240]

    for P in (3, 8, 20):
        sweeps = [iv.sweep(ck, text_of(P)) for _ in range(3)]
        hd = np.mean([s.head_delta for s in sweeps], 0)
        bd = np.mean([s.band_delta for s in sweeps], 0)
        e = sweeps[0].band_edges
        print(f"P={P} f={1 / P:.3f} clean {np.mean([s.bits_clean for s in sweeps]):.3f} bits/byte")
        print("  head zeroed (block x head):", np.round(hd, 2).tolist())
        print("  band stopped, summed over heads (block x band):", np.round(bd.sum(1), 2).tolist())
        for lowest in (0, 1):
            k, h, b = np.unravel_index(np.argmax(bd[:, :, lowest:]), bd[:, :, lowest:].shape)
            b += lowest
            print(f"  largest band{' above the lowest' if lowest else ''}: block {k} head {h} "
                  f"[{e[b]:.3f}, {e[b + 1]:.3f}] +{bd[k, h, b]:.3f}")
        text = text_of(P)
        f0, w = 1 / P, 0.1 / P
        ctrl = 1.3 * f0 if 1.3 * f0 + w < 0.5 else 0.7 * f0
        for k in range(n):
            row = [f"h{h} {iv.filter_band(ck, text, k, h, (f0 - w, min(0.5, f0 + w))).delta_bits:+.3f}/"
                   f"{iv.filter_band(ck, text, k, h, (ctrl - w, ctrl + w)).delta_bits:+.3f}" for h in range(H)]
            print(f"  block {k}: stop {f0:.3f}+-{w:.3f} / control {ctrl:.3f}:", ", ".join(row))


if __name__ == "__main__":
    main()
