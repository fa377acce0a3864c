"""Question 2: how close is the MHF mixer's FFT-convolution path to the physical limit?

The path takes the value and gate streams v, g (B, L, D) in bf16 and returns y (B, L, D) in bf16
(what Linear_O reads), with float32 FFTs. Its floor is the fewest bytes it must move, reading
v and g once and writing y once (6 bytes per element), over the GPU's measured device-to-device
copy bandwidth (bytes read plus written). Reported: measured time / floor at each length, for the
plain path (the model's reference: v.float(), g.float(), pad to N >= 3L-2, rfft, multiply, irfft,
cast) and the fast path (models.fourier.fft_conv), plus the fast path's stages one by one and
the variants it was chosen from (FFT sizes, layouts). Also the max abs difference fast vs plain.

    python3 benchmarks/fft_floor.py [--device cuda] [--batch 1 8] [--lengths ...] [--variants]
"""

from __future__ import annotations

import argparse

import torch

from _util import bench, copy_bandwidth, header, is_oom, save, table

from models import fourier
from models.config import ModelConfig
from models.mhf import MultiHeadFourier


def make_mixer(D, H, C, device):
    torch.manual_seed(0)
    m = MultiHeadFourier(ModelConfig(d_model=D, n_heads=H, context=C)).to(device).eval()
    with torch.no_grad():
        m.spectrum.add_(0.3 * torch.randn_like(m.spectrum))
        m.gate_bias.add_(0.3 * torch.randn_like(m.gate_bias))
    return m


def plain(m, v, g):
    y, _, _ = m.mix_reference(v.float(), g.float())
    return y.to(torch.bfloat16)


def stages(m, v, g, n):
    """The Triton pipeline's five stages as separate callables (one channel chunk: all of D)."""
    B, L, D = v.shape
    K, _ = m.kernel_spectrum(L, n, torch.float32)
    Kc = K.contiguous()
    H, F = Kc.shape
    dh = D // H
    C = B * D
    kern = fourier._triton_kernels()
    buf = torch.empty((C, n), device=v.device, dtype=torch.complex64)
    Z = torch.empty((C // 2, n), device=v.device, dtype=torch.complex64)
    out = torch.empty((B, L, D), device=v.device, dtype=torch.bfloat16)
    X = torch.fft.fft(buf, dim=1)
    y = torch.view_as_real(torch.fft.ifft(Z, dim=1, norm="forward"))
    cd = fourier.triton_cdiv

    def pack():
        kern["pack"][(cd(n, 64), cd(C, 64))](v, g, torch.view_as_real(buf), L, n, C, D, v.stride(0), v.stride(1),
                                             g.stride(0), g.stride(1), 1, n, BT=64, BC=64)

    def fft():
        torch.fft.fft(buf, dim=1)

    def product():
        kern["product"][(cd(F, 128), cd(C // 2, 16))](torch.view_as_real(X), torch.view_as_real(Kc), torch.view_as_real(Z),
                                                      n, F, C // 2, D, dh, X.stride(0), X.stride(1),
                                                      Kc.stride(0), Kc.stride(1), 0.25, BF=128, BP=16)

    def ifft():
        torch.fft.ifft(Z, dim=1, norm="forward")

    def unpack():
        kern["unpack"][(cd(L, 64), cd(C, 64))](y, out, L, n, C, D, y.stride(0), y.stride(1), out.stride(0), out.stride(1),
                                               BT=64, BC=64)
    # bytes each stage must move (read + write), per the buffers above
    E = B * L * D
    nb = {"pack": E * 4 + C * n * 8, "fft": 2 * C * n * 8, "product": C * n * 8 + (C // 2) * n * 8,
          "ifft": 2 * (C // 2) * n * 8, "unpack": E * 4 + E * 2}
    return {"pack": pack, "fft": fft, "product": product, "ifft": ifft, "unpack": unpack}, nb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536, 262144])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--variants", action="store_true", help="also time the layouts and FFT sizes the fast path was chosen from")
    args = ap.parse_args()
    dev = args.device
    bw = copy_bandwidth(dev)
    print(f"device-to-device copy bandwidth: {bw / 1e12:.3f} TB/s (read + write)", flush=True)
    m = make_mixer(args.width, args.heads, args.context, dev)
    rows, stage_rows, variant_rows = [], [], []
    for B in args.batch:
        for L in args.lengths:
            g_ = torch.Generator(device=dev).manual_seed(L + B)
            v = torch.randn(B, L, args.width, device=dev, generator=g_).to(torch.bfloat16)
            g = torch.randn(B, L, args.width, device=dev, generator=g_).to(torch.bfloat16)
            floor_ms = 6 * v.numel() / bw * 1e3
            n = m.fft_size(L)
            row = {"B": B, "L": L, "N_fast": n, "N_plain": fourier.causal_fft_size(L, 3), "floor_ms": floor_ms}
            with torch.no_grad():
                fast_fn = lambda: m.mix(v, g, dtype=torch.float32, out_dtype=torch.bfloat16)[0]  # noqa: E731
                row["fast_ms"] = bench(fast_fn, dev)["median_ms"]
                row["fast_over_floor"] = row["fast_ms"] / floor_ms
                y_fast = fast_fn().float()
                try:
                    row["plain_ms"] = bench(lambda: plain(m, v, g), dev)["median_ms"]
                    row["plain_over_floor"] = row["plain_ms"] / floor_ms
                    ref = plain(m, v, g).float()
                    row["max_abs_diff"] = (y_fast - ref).abs().max().item()
                    row["rel_diff"] = row["max_abs_diff"] / ref.abs().max().item()
                    row["speedup"] = row["plain_ms"] / row["fast_ms"]
                    del ref
                except Exception as e:  # noqa: BLE001
                    if not is_oom(e):
                        raise
                    row["plain_ms"] = "OOM"
                torch.cuda.empty_cache()
                if L <= 16384 and B == 1:  # the float64 oracle: the plain path in float64
                    ref64, _, _ = m.mix_reference(v.double(), g.double())
                    row["rel_err_vs_f64"] = ((y_fast.double() - ref64).abs().max() / ref64.abs().max()).item()
                    del ref64
                del y_fast
                torch.cuda.empty_cache()
                try:
                    fns, nbytes = stages(m, v, g, n)
                    srow = {"B": B, "L": L, "N": n}
                    total = 0.0
                    for name, fn in fns.items():
                        t = bench(fn, dev)["median_ms"]
                        total += t
                        srow[name + "_ms"] = t
                        srow[name + "_TBs"] = nbytes[name] / (t / 1e3) / 1e12
                    srow["sum_ms"] = total
                    srow["bytes_over_floor"] = sum(nbytes.values()) / (6 * v.numel())
                    stage_rows.append(srow)
                    print(srow, flush=True)
                except Exception as e:  # noqa: BLE001
                    if not is_oom(e):
                        raise
                torch.cuda.empty_cache()
                if args.variants:
                    K32 = {}
                    for method, smooth, layout in [("torch_bld", (2, 3, 5), None), ("torch_lbd", (2, 3, 5), None),
                                                   ("triton", (2,), "channel"), ("triton", (2, 3), "channel"),
                                                   ("triton", (2, 3, 5), "channel"), ("triton", (2, 3, 5, 7), "channel"),
                                                   ("triton", (2, 3, 5), "time")]:
                        nn_ = fourier.exact_conv_fft_size(L, min(args.context, L), smooth)
                        if nn_ not in K32:
                            K32[nn_] = m.kernel_spectrum(L, nn_, torch.float32)[0]
                        K = K32[nn_]
                        if method == "triton":
                            fn = lambda: fourier._fft_conv_triton(v, g, K, nn_, dtype=torch.float32,  # noqa: E731
                                                                  out_dtype=torch.bfloat16, pack_layout=layout)
                        else:
                            fn = lambda: fourier.fft_conv(v, g, K, nn_, dtype=torch.float32,  # noqa: E731
                                                          out_dtype=torch.bfloat16, method=method)
                        vr = {"B": B, "L": L, "method": method, "primes": "".join(map(str, smooth)),
                              "layout": layout or "-", "N": nn_}
                        try:
                            vr["ms"] = bench(fn, dev, budget_s=0.5)["median_ms"]
                            vr["over_floor"] = vr["ms"] / floor_ms
                        except Exception as e:  # noqa: BLE001
                            if not is_oom(e):
                                raise
                            vr["ms"] = "OOM"
                        torch.cuda.empty_cache()
                        variant_rows.append(vr)
                        print(vr, flush=True)
            rows.append(row)
            print(row, flush=True)
            del v, g
            torch.cuda.empty_cache()
    save("fft_floor", {"copy_bw_Bps": bw, "rows": rows, "stages": stage_rows, "variants": variant_rows})
    print()
    print(header("FFT-convolution path vs the bandwidth floor (bf16 in/out, float32 FFTs)", dev))
    print(f"copy bandwidth {bw / 1e12:.3f} TB/s; floor = 6 bytes x B x L x D / bandwidth; D={args.width}, H={args.heads}, C={args.context}\n")
    print(table(rows, [("B", "B"), ("L", "L"), ("N_plain", "N plain"), ("N_fast", "N fast"), ("floor_ms", "floor ms"),
                       ("plain_ms", "plain ms"), ("fast_ms", "fast ms"), ("plain_over_floor", "plain/floor"),
                       ("fast_over_floor", "fast/floor"), ("speedup", "fast vs plain"),
                       ("rel_diff", "max|fast-plain|/max|plain|"), ("rel_err_vs_f64", "fast rel err vs f64")]))
    print()
    print(table(stage_rows, [("B", "B"), ("L", "L"), ("N", "N"), ("pack_ms", "pack ms"), ("fft_ms", "fft ms"),
                             ("product_ms", "product ms"), ("ifft_ms", "ifft ms"), ("unpack_ms", "unpack ms"),
                             ("sum_ms", "sum ms"), ("pack_TBs", "pack TB/s"), ("fft_TBs", "fft TB/s"),
                             ("product_TBs", "product TB/s"), ("ifft_TBs", "ifft TB/s"), ("unpack_TBs", "unpack TB/s"),
                             ("bytes_over_floor", "bytes moved / floor bytes")]))
    if variant_rows:
        print()
        print(table(variant_rows, [("B", "B"), ("L", "L"), ("method", "method"), ("primes", "N primes"),
                                   ("layout", "pack layout"), ("N", "N"), ("ms", "ms"), ("over_floor", "/floor")]))


if __name__ == "__main__":
    main()
