#!/usr/bin/env bash
# Train every sample checkpoint and the two comparison models, in parallel on one GPU (the
# models are small, so one process alone leaves the GPU mostly idle). Usage:
#   bash scripts/train_samples.sh OUTDIR
# Writes OUTDIR/<preset>.safetensors and OUTDIR/train.log (one summary line per preset).
set -u
out=${1:?usage: train_samples.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
pids=()
for preset in caracal-shakespeare caracal-circular-leaky fftnet-shakespeare transformer-shakespeare \
              caracal-hybrid-shakespeare caracal-periodic; do
  timeout 560 python3 -m models.train --preset "$preset" --out "$out/$preset.safetensors" --no-progress \
    > "$out/$preset.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
cat "$out"/*.log | grep -v Warning | grep -v "return Variable" > "$out/train.log"
cat "$out/train.log"
