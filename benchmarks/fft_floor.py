"""Question 2: how close is the MHF mixer's FFT-convolution path to the physical limit?

The path takes the value and gate streams v, g (B, L, D) in bf16 and returns y (B, L, D) in bf16
(what Linear_O reads), with float32 FFTs. Its floor is the fewest bytes it must move, reading
v and g once and writing y once (6 bytes per element), over the GPU's measured device-to-device
copy bandwidth (bytes read plus written). Columns, all timed in the same run:
  torch 2L   the plain PyTorch FFT convolution of v with g (rfft at N = 2L, multiply, irfft,
             float32, cast): the baseline the issue names (no learned kernel)
  plain      the model's reference path (v.float(), g.float(), pad to N >= 3L-2, rfft, multiply
             by the learned kernel's spectrum, irfft, cast)
  cufft      the cuFFT pipeline (models.fourier._fft_conv_triton, five passes) at its 2,3,5-smooth N
  hopper     the tensor-core kernel of models.fftconv_triton (three passes) at its own N
  fast       the module's fast path as dispatched (models.fourier.fft_conv "auto")
plus each pipeline's passes one by one (time, bytes, TB/s), the backward's stages one by one
(models.fourier._fft_conv_grads, what FFTConvFunction.backward runs, with their bytes against
the backward's floor: read v, g, dy once and write dv, dg once, 10 bytes per element), errors against a float64
oracle (the plain path in float64), and with --variants the kernel's row lengths, intermediate
dtypes and block sizes. The two ceilings (copy bandwidth, dense bf16/tf32 matrix products) come first.

    python3 -m benchmarks.fft_floor [--device cuda] [--batch 1 8] [--lengths ...] [--variants]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._util import bench, copy_bandwidth, header, is_oom, save, table
from models import fftconv_triton, fourier
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


def backward_stages(m, v, g, n):
    """The backward's stages (models.fourier._fft_conv_grads, dk included) as separate callables,
    with the bytes each must move (read + write of the tensors it takes and makes)."""
    B, L, D = v.shape
    H = m.n_heads
    with torch.no_grad():
        k_buf = m.kernel_buffer(L, n)[0].float()
    dy = torch.randn_like(v)
    F = n // 2 + 1
    e = B * L * D  # elements of one (B, L, D) stream
    c = 8 * B * F * D  # bytes of one complex64 (B, F, D) spectrum
    Kf = torch.fft.rfft(k_buf, n=n, dim=-1).transpose(-1, -2)[..., None]
    spec = lambda x: torch.fft.rfft(x.float(), n=n, dim=-2).reshape(B, F, H, D // H)  # noqa: E731
    V, G, DY = spec(v), spec(g), spec(dy)
    P = DY * torch.conj_physical(G * Kf)
    fns = {
        "rfft x3": lambda: (spec(v), spec(g), spec(dy)),
        "products x2": lambda: (DY * torch.conj_physical(G * Kf), DY * torch.conj_physical(V * Kf)),
        "irfft x2": lambda: (torch.fft.irfft(P.reshape(B, F, D), n=n, dim=-2)[:, :L].to(v.dtype),
                             torch.fft.irfft(P.reshape(B, F, D), n=n, dim=-2)[:, :L].to(v.dtype)),
        "dk": lambda: torch.fft.irfft((DY * torch.conj_physical(V * G)).sum(dim=(0, -1)).transpose(-1, -2), n=n, dim=-1),
        "whole": lambda: fourier._fft_conv_grads(dy, v, g, k_buf, n, torch.float32, need_dk=True),
    }
    nbytes = {"rfft x3": 3 * (2 * e + c), "products x2": 2 * (3 * c), "irfft x2": 2 * (c + 2 * e),
              "dk": 3 * c + 8 * F * H + 4 * H * k_buf.shape[-1], "whole": 10 * e}
    return fns, nbytes


def stage_row(build, dev: str, row: dict, rows: list, summarise) -> None:
    """Time each stage of `build()` -> (callables, bytes) into row ("<name>_ms" median, "<name>_TBs"),
    let summarise(row, callables, bytes) add its totals, append it to rows; out of memory skips it."""
    try:
        fns, nbytes = build()
        for name, fn in fns.items():
            row[name + "_ms"] = bench(fn, dev)["median_ms"]
            row[name + "_TBs"] = nbytes[name] / (row[name + "_ms"] / 1e3) / 1e12
        summarise(row, fns, nbytes)
        rows.append(row)
        print(row, flush=True)
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def matmul_rate(device, dtype, n=8192) -> float:
    """Dense matrix-product rate in FLOP/s through torch (random operands)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        t = bench(lambda: a @ b, device, warmup=3, min_reps=10, budget_s=1.0)["median_ms"]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return 2 * n ** 3 / (t / 1e3)


def torch_2l(v, g):
    """The baseline: v conv g through rfft/irfft at N = 2L in float32, first L samples, bf16."""
    L = v.shape[1]
    P = torch.fft.rfft(v.float(), n=2 * L, dim=1) * torch.fft.rfft(g.float(), n=2 * L, dim=1)
    return torch.fft.irfft(P, n=2 * L, dim=1)[:, :L].to(torch.bfloat16)


def rel_err(y, ref) -> float:
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


def hopper_variants(L, C):
    """(label, N2, options) for --variants: row lengths, intermediate dtypes, block sizes, warps."""
    out = []
    for N2 in (256, 512, 1024):
        for w in ((4, 4, 4), (4, 8, 4), (8, 8, 8)):
            out.append((f"N2={N2} warps {w}", N2, dict(warps=w)))
    N2 = fftconv_triton.row_length(L)
    out += [(f"N2={N2} float32 intermediates", N2, dict(store_dtype=torch.float32)),
            (f"N2={N2} BK=64", N2, dict(block_k=64)),
            (f"N2={N2} gauss", N2, dict(gauss=True)),
            (f"N2={N2} tf32x3", N2, dict(precision="tf32x3"))]
    return out


def run_shape(m, B, L, args, bw, dev, rows, stage_rows, variant_rows, cufft_rows, back_rows):
    g_ = torch.Generator(device=dev).manual_seed(L + B)
    D = args.width
    v = torch.randn(B, L, D, device=dev, generator=g_).to(torch.bfloat16)
    g = torch.randn(B, L, D, device=dev, generator=g_).to(torch.bfloat16)
    floor_ms = 6 * v.numel() / bw * 1e3
    n = m.fft_size(L)
    n_cufft = fourier.smooth_fft_size(2 * L + min(args.context, L) - 2)
    n_hop = fftconv_triton.fft_size(L, min(args.context, L))
    hopper_here = fftconv_triton.triton is not None and torch.cuda.get_device_capability(dev)[0] == 9
    hop = fftconv_triton.split(n_hop, L) if hopper_here and L >= fftconv_triton.MIN_LENGTH else None
    row = {"B": B, "L": L, "N_plain": fourier.causal_fft_size(L, 3), "N_cufft": n_cufft, "N_fast": n, "N_hopper": n_hop,
           "floor_ms": floor_ms, "fast_method": fourier.choose_method(
               device_type=torch.device(dev).type, capability=fourier._capability(torch.device(dev)),
               have_triton=fourier._have_triton(), B=B, L=L, n=n, channels=D, heads=args.heads,
               dtype=torch.float32, out_dtype=torch.bfloat16, needs_grad=False)}
    with torch.no_grad():
        ref = None
        B_ref = 1 if B > 1 else B  # the float64 oracle on the first sample only when B > 1
        try:
            ref, _, _ = m.mix_reference(v[:B_ref].double(), g[:B_ref].double())
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
        torch.cuda.empty_cache()

        def timed(name, fn, keep_err=True):
            try:
                row[name + "_ms"] = bench(fn, dev)["median_ms"]
                if keep_err and ref is not None:
                    row[name + "_err"] = rel_err(fn()[:B_ref], ref)
            except Exception as e:  # noqa: BLE001
                if not is_oom(e):
                    raise
                row[name + "_ms"] = "OOM"
            torch.cuda.empty_cache()

        timed("torch2l", lambda: torch_2l(v, g), keep_err=False)
        timed("plain", lambda: plain(m, v, g))
        K_c = m.kernel_spectrum(L, n_cufft, torch.float32)[0]
        timed("cufft", lambda: fourier._fft_conv_triton(v, g, K_c, n_cufft, dtype=torch.float32, out_dtype=torch.bfloat16))
        out = torch.full(v.shape, float("nan"), device=dev, dtype=torch.bfloat16)
        fast = lambda: m.mix(v, g, dtype=torch.float32, out_dtype=torch.bfloat16)[0]  # noqa: E731
        timed("fast", fast)
        if hop is not None:  # every output written: a NaN-poisoned buffer filled by the kernel
            K, _ = m.kernel_spectrum(L, n_hop, torch.float32)
            timed("hopper", lambda: fftconv_triton.fft_conv(v, g, K, hop, out_dtype=torch.bfloat16))
            fftconv_triton.fft_conv(v, g, K, hop, out_dtype=torch.bfloat16, out=out)
            row["all_written"] = bool(torch.isfinite(out).all().item())
        stage_row(lambda: stages(m, v, g, n_cufft), dev, {"B": B, "L": L, "N": n_cufft}, cufft_rows,
                  lambda r, fns, nb: r.update(sum_ms=sum(r[k + "_ms"] for k in fns),
                                              bytes_over_floor=sum(nb.values()) / (6 * v.numel())))
        stage_row(lambda: backward_stages(m, v, g, n), dev,
                  {"B": B, "L": L, "N": n, "floor_ms": 10 * v.numel() / bw * 1e3}, back_rows,
                  lambda r, fns, nb: r.update(over_floor=r["whole_ms"] / r["floor_ms"], bytes_over_floor=sum(
                      b for k, b in nb.items() if k != "whole") / nb["whole"]))
        for k in ("torch2l", "plain", "cufft", "hopper"):
            if isinstance(row.get(k + "_ms"), float) and isinstance(row.get("fast_ms"), float):
                row["fast_vs_" + k] = row[k + "_ms"] / row["fast_ms"]
        if isinstance(row.get("hopper_ms"), float) and isinstance(row.get("cufft_ms"), float):
            row["hopper_vs_cufft"] = row["cufft_ms"] / row["hopper_ms"]
        if isinstance(row.get("fast_ms"), float):
            row["fast_over_floor"] = row["fast_ms"] / floor_ms
        if hop is not None:
            K, _ = m.kernel_spectrum(L, n_hop, torch.float32)
            srow = {"B": B, "L": L, "N": n_hop, "N1": hop.N1, "N2": hop.N2}
            total_b, total_t = 0, 0.0
            for name, launch, nbytes in fftconv_triton.passes(v, g, K, hop, out):
                t = bench(launch, dev)["median_ms"]
                srow[name + "_ms"] = srow.get(name + "_ms", 0.0) + t
                srow[name + "_bytes"] = srow.get(name + "_bytes", 0) + nbytes
                total_b += nbytes
                total_t += t
            for name in ("columns", "rows", "inverse"):
                srow[name + "_TBs"] = srow[name + "_bytes"] / (srow[name + "_ms"] / 1e3) / 1e12
            srow["sum_ms"] = total_t
            srow["bytes_over_floor"] = total_b / (6 * v.numel())
            stage_rows.append(srow)
            print(srow, flush=True)
            if args.variants and ((B == 1 and L in (16384, 65536)) or (B == 8 and L == 65536)):
                for label, N2, opts in hopper_variants(L, B * D):
                    nv = fftconv_triton.fft_size(L, min(args.context, L), N2)
                    pv = fftconv_triton.split(nv, L, N2)
                    Kv, _ = m.kernel_spectrum(L, nv, torch.float32)
                    fn = lambda: fftconv_triton.fft_conv(v, g, Kv, pv, out_dtype=torch.bfloat16, **opts)  # noqa: E731
                    vr = {"B": B, "L": L, "variant": label, "N": nv, "N1": pv.N1}
                    try:
                        vr["ms"] = bench(fn, dev, budget_s=0.5)["median_ms"]
                    except Exception as e:  # noqa: BLE001 - a variant too large for the chip is a result
                        if type(e).__name__ != "OutOfResources":
                            raise
                        vr["ms"] = f"no: {str(e)[:40]}"
                        variant_rows.append(vr)
                        continue
                    vr["over_floor"] = vr["ms"] / floor_ms
                    if ref is not None:
                        vr["err"] = rel_err(fn()[:B_ref], ref)
                    variant_rows.append(vr)
                    print(vr, flush=True)
                    torch.cuda.empty_cache()
        ref = None  # free the oracle's memory before the next size
    rows.append(row)
    print(row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536, 262144])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--variants", action="store_true", help="also time the Hopper kernel's variants")
    args = ap.parse_args()
    dev = args.device
    bw = copy_bandwidth(dev)
    bf16 = matmul_rate(dev, torch.bfloat16)
    tf32 = matmul_rate(dev, torch.float32)
    print(f"ceilings: copy {bw / 1e12:.3f} TB/s (read + write); dense matmul bf16 {bf16 / 1e12:.0f} TFLOP/s, "
          f"tf32 {tf32 / 1e12:.0f} TFLOP/s (8192^3, torch)", flush=True)
    m = make_mixer(args.width, args.heads, args.context, dev)
    rows, stage_rows, variant_rows, cufft_rows, back_rows = [], [], [], [], []
    for B in args.batch:
        for L in args.lengths:
            run_shape(m, B, L, args, bw, dev, rows, stage_rows, variant_rows, cufft_rows, back_rows)
            torch.cuda.empty_cache()
    save("fft_floor", {"copy_bw_Bps": bw, "bf16_flops": bf16, "tf32_flops": tf32, "rows": rows,
                       "cufft_stages": cufft_rows, "stages": stage_rows, "variants": variant_rows,
                       "backward_stages": back_rows})
    print()
    print(header("FFT-convolution path vs the bandwidth floor (bf16 in/out, float32 FFTs)", dev))
    print(f"ceilings: copy {bw / 1e12:.3f} TB/s, bf16 matmul {bf16 / 1e12:.0f} TFLOP/s, tf32 {tf32 / 1e12:.0f} TFLOP/s; "
          f"floor = 6 bytes x B x L x D / copy bandwidth; D={args.width}, H={args.heads}, C={args.context}\n")
    print(table(rows, [("B", "B"), ("L", "L"), ("N_cufft", "N cufft"), ("N_hopper", "N hopper"), ("fast_method", "fast is"),
                       ("floor_ms", "floor ms"), ("torch2l_ms", "torch 2L ms"), ("plain_ms", "plain ms"),
                       ("cufft_ms", "cufft ms"), ("hopper_ms", "hopper ms"), ("fast_ms", "fast ms"),
                       ("fast_over_floor", "fast/floor"), ("fast_vs_torch2l", "fast vs torch 2L"),
                       ("fast_vs_plain", "fast vs plain"), ("hopper_vs_cufft", "hopper vs cufft"),
                       ("plain_err", "plain err vs f64"), ("cufft_err", "cufft err vs f64"),
                       ("hopper_err", "hopper err vs f64"), ("fast_err", "fast err vs f64"),
                       ("all_written", "hopper wrote all")]))
    print()
    print(table(cufft_rows, [("B", "B"), ("L", "L"), ("N", "N"), ("pack_ms", "pack ms"), ("fft_ms", "fft ms"),
                             ("product_ms", "product ms"), ("ifft_ms", "ifft ms"), ("unpack_ms", "unpack ms"),
                             ("sum_ms", "sum ms"), ("pack_TBs", "pack TB/s"), ("fft_TBs", "fft TB/s"),
                             ("product_TBs", "product TB/s"), ("ifft_TBs", "ifft TB/s"), ("unpack_TBs", "unpack TB/s"),
                             ("bytes_over_floor", "bytes moved / floor bytes")]))
    print()
    print("backward (models.fourier._fft_conv_grads, dk included; floor: 10 bytes per element):")
    print(table(back_rows, [("B", "B"), ("L", "L"), ("N", "N"), ("floor_ms", "floor ms"), ("whole_ms", "whole ms"),
                            ("over_floor", "whole/floor"), ("rfft x3_ms", "3 rfft ms"), ("products x2_ms", "2 products ms"),
                            ("irfft x2_ms", "2 irfft ms"), ("dk_ms", "dk ms"), ("rfft x3_TBs", "rfft TB/s"),
                            ("products x2_TBs", "products TB/s"), ("irfft x2_TBs", "irfft TB/s"), ("dk_TBs", "dk TB/s"),
                            ("bytes_over_floor", "stage bytes / floor bytes")]))
    print()
    print(table(stage_rows, [("B", "B"), ("L", "L"), ("N", "N"), ("N1", "N1"), ("N2", "N2"),
                             ("columns_ms", "columns ms"), ("rows_ms", "rows ms"), ("inverse_ms", "inverse ms"),
                             ("sum_ms", "sum ms"), ("columns_TBs", "columns TB/s"), ("rows_TBs", "rows TB/s"),
                             ("inverse_TBs", "inverse TB/s"), ("bytes_over_floor", "bytes moved / floor bytes")]))
    if variant_rows:
        print()
        print(table(variant_rows, [("B", "B"), ("L", "L"), ("variant", "variant"), ("N", "N"), ("N1", "N1"),
                                   ("ms", "ms"), ("over_floor", "/floor"), ("err", "err vs f64")]))


if __name__ == "__main__":
    main()
