#!/usr/bin/env bash
# One arm of the coherence comparison (docs/EXPERIMENTS.md): train a transformer for MINUTES on one
# thread (so two arms share the 2-core machine evenly), then score it on 50 validation shapes of
# chair, airplane and car (parts per shape, share in one part, 1-NNA/COV/MMD-CD, class accuracy).
#   bash experiments/coherence/arm.sh NAME CPU MINUTES [train model flags...]
# Checkpoints, weights and logs go under $SMART3D_HOME (default ~/.cache/smart3d), outside the checkout;
# the results JSON goes to experiments/results/coherence_NAME.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1 cpu=$2 minutes=$3; shift 3
home=${SMART3D_HOME:-$HOME/.cache/smart3d}
export SMART3D_CACHE=${SMART3D_CACHE:-$home/data} OMP_NUM_THREADS=1
dir=$home/arms/$name
mkdir -p "$dir" experiments/results
for w in tokenizer classifier image_encoder; do
  for ext in json safetensors; do ln -sf "$PWD/weights/$w.$ext" "$dir/$w.$ext"; done
done
taskset -c "$cpu" python -m smart3d train model --minutes "$minutes" --checkpoint "$home/checkpoints/arm_$name.pt" \
  --out "$dir/model" "$@" > "$dir/train.log" 2>&1
taskset -c "$cpu" python -m smart3d evaluate --task generation --split val --num 50 --classes chair airplane car \
  --weights "$dir" --out "experiments/results/coherence_$name.json" > "$dir/eval.log" 2>&1
echo "arm $name done"
