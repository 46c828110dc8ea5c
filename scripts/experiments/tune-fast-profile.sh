#!/usr/bin/env bash
# The measurements behind the fast profile's defaults (docs/experiments.md, "Choosing the fast
# profile"): Baseline-RGB under candidate recipes on Flowers-102 AND the CUB subset, k = 1 and 5,
# judged on VALIDATION top-1 (the test column is printed but not used to choose). Seeds 0 and 1
# at k = 1 (a minute a cell), seed 0 at k = 5 (three minutes a cell).
#
#   scripts/experiments/tune-fast-profile.sh [OUT_ROOT]     (default ~/.cache/halsal/runs/tune)
#
# Needs build/examples/halsal_protocol (wheel build), ../shared/data and ../shared/weights.
# Each candidate is its own resumable protocol folder; rerunning skips finished cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-$HOME/.cache/halsal/runs/tune}
shared=${HALSAL_SHARED:-../shared}
bin=${HALSAL_PROTOCOL:-build/examples/halsal_protocol}
weights=$shared/weights/mobilenet_v2-imagenet.pth
export HALSAL_NUM_THREADS=${HALSAL_NUM_THREADS:-$(nproc)}

# name | flags over --profile fast (160 px, backbone 1e-4, head 300x, cosine, 12 epochs)
candidates=(
  "xavier|--head xavier --warmup-epochs 0"
  "imprint|--head imprint --warmup-epochs 0"
  "imprint-warm2|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --epochs 10"
  "imprint-warm2-headx30|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --epochs 10 --set new_layer_lr_scale=30"
  "imprint-warm2-lr3e-4|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --epochs 10 --set lr=3e-4 --set new_layer_lr_scale=100 --set saliency_lr_scale=0.333"
  "imprint-warm4-wlr0.2|--head imprint --warmup-epochs 4 --set warmup_lr=0.2 --epochs 10"
  "imprint-warm2-e16|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --epochs 16"
)
only=${TUNE_ONLY:-}
for entry in "${candidates[@]}"; do
  name=${entry%%|*}
  flags=${entry#*|}
  [ -n "$only" ] && [[ ",$only," != *",$name,"* ]] && continue
  for ds in flowers102 cub200_subset100; do
    # shellcheck disable=SC2086
    "$bin" --data "$shared/data/$ds" --weights "$weights" --normalization symmetric --profile fast $flags \
      --methods rgb --k 1 --seeds 0,1 --out "$out/$name/$ds" >"$out/$name-$ds-k1.log" 2>&1 || { echo "failed: $name $ds"; exit 1; }
    "$bin" --data "$shared/data/$ds" --weights "$weights" --normalization symmetric --profile fast $flags \
      --methods rgb --k 5 --seeds 0 --out "$out/$name/$ds" >"$out/$name-$ds-k5.log" 2>&1 || { echo "failed: $name $ds"; exit 1; }
    echo "done: $name $ds"
  done
done
python3 scripts/experiments/summarize-tuning.py "$out"
