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
# Other jobs may share the cores: OpenMP threads that spin while waiting would then waste them.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# The base every candidate starts from: the fast profile as it was before this tuning (160 px,
# cosine, crops of 35-100 %, backbone and branch at 1e-4, head at 300x = 3e-2, 12 epochs),
# spelled out so that the candidates do not move when fast_profile() does.
base="--set lr=1e-4 --set new_layer_lr_scale=300 --set saliency_lr_scale=1 --set epochs=12 --set warmup_lr=0.01"
# name | flags over the base (later --set wins)
candidates=(
  "xavier|--head xavier --warmup-epochs 0"
  "imprint|--head imprint --warmup-epochs 0"
  "imprint-warm2|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --set epochs=10"
  "imprint-warm2-headx30|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --set epochs=10 --set new_layer_lr_scale=30"
  "imprint-warm2-lr3e-4|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --set epochs=10 --set lr=3e-4 --set new_layer_lr_scale=100 --set saliency_lr_scale=0.333"
  "imprint-warm4-wlr0.2|--head imprint --warmup-epochs 4 --set warmup_lr=0.2 --set epochs=10"
  "imprint-warm2-e16|--head imprint --warmup-epochs 2 --set warmup_lr=0.05 --set epochs=16"
)
only=${TUNE_ONLY:-}
for entry in "${candidates[@]}"; do
  name=${entry%%|*}
  flags="$base ${entry#*|}"
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
