#!/usr/bin/env bash
# The runs behind docs/results.md: Step I on all shared ImageNet images (a fifth held out for its
# check), then the k-shot protocol on Flowers-102 and the CUB subset with the fast profile.
#
#   scripts/experiments/results.sh [OUT_ROOT] [K_LIST] [METHODS]
#     OUT_ROOT  default ~/.cache/halsal/runs/results (keep it outside the work tree)
#     K_LIST    default 1,5        METHODS  default ncm,ncm-sal,rgb,A,B
#
# Resumable: rerun the same command after an interruption, or with more k / methods / seeds;
# finished cells are kept. Needs build/examples/halsal_protocol, ../shared/data, ../shared/weights.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-$HOME/.cache/halsal/runs/results}
ks=${2:-1,5}
methods=${3:-ncm,ncm-sal,rgb,A,B}
seeds=${SEEDS:-0,1,2}
shared=${HALSAL_SHARED:-../shared}
bin=${HALSAL_PROTOCOL:-build/examples/halsal_protocol}
weights=$shared/weights/mobilenet_v2-imagenet.pth
export HALSAL_NUM_THREADS=${HALSAL_NUM_THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # other jobs may share the cores
mkdir -p "$out"
common=(--backbone mobilenet_v2 --weights "$weights" --normalization symmetric --saliency-activation softplus)

# Step I: softplus map from a constant start (s = 0.1), Adam at 1e-4 on the branch, mild crops;
# docs/experiments.md has the other settings tried and what each gave.
step_one=$out/stepI/stepI-mnv2.safetensors
if [ ! -f "$step_one" ]; then
  mkdir -p "$out/stepI"
  "$bin" "${common[@]}" --step-one "$shared/data/imagenet_samples,$shared/data/imagenet_extra" --holdout 0.2 \
    --saliency-start constant --epochs 4 --set optimizer=adam --set weight_decay=0 --set crop_scale_min=0.8 \
    --stepI "$step_one.partial.safetensors" --out "$out/stepI" 2>&1 | tee "$out/stepI/log.txt"
  mv "$step_one.partial.safetensors" "$step_one"
fi

for ds in flowers102 cub200_subset100; do
  "$bin" "${common[@]}" --data "$shared/data/$ds" --stepI "$step_one" --profile fast \
    --methods "$methods" --k "$ks" --seeds "$seeds" --out "$out/$ds" 2>&1 | tee -a "$out/$ds.log"
done
