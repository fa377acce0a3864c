"""Probe the lent GPU: CUDA forward/backward of every mixer under bf16 autocast, causality and
incremental decoding on CUDA, and training speed of each preset (steps per second).

    python3 -m scripts.gpu_probe      (from the repository root, or anywhere after `pip install -e .`)
"""
import time

import torch

from models import ByteLM, ModelConfig
from models.train import train

print(torch.__version__, torch.cuda.get_device_name(0))
dev = torch.device("cuda")
for kw in [dict(), dict(causal_mode="circular"), dict(mixer="fftnet"), dict(mixer="attention"), dict(swa_every=3, swa_window=64)]:
    m = ByteLM(ModelConfig(d_model=64, n_layers=3, n_heads=4, context=128, **kw)).to(dev).eval()
    ids = torch.randint(0, 256, (2, 200), device=dev)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        lo = m(ids)
    ids2 = ids.clone()
    ids2[:, 120] ^= 1
    with torch.autocast("cuda", dtype=torch.bfloat16):
        lo2 = m(ids2)
    f32, f32b = m(ids), m(ids2)
    leak = (f32[:, :120] - f32b[:, :120]).abs().max().item()
    inc = None
    if m.supports_incremental:
        last, _ = m.stream_logits(ids[:, :150])
        inc = (last - m(ids[:, :150])[:, -1]).abs().max().item()
    print(kw, "bf16 dtype", lo.dtype, "leak f32", leak, "incremental", inc)
for name in ["caracal-shakespeare", "caracal-circular-leaky", "fftnet-shakespeare", "transformer-shakespeare", "caracal-hybrid-shakespeare", "caracal-periodic"]:
    t = time.perf_counter()
    rec = train(name, f"/tmp/{name}.safetensors", steps=60, progress=False)
    print(name, f"{60 / (time.perf_counter() - t):.1f} steps/s (incl. eval)")
