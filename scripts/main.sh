#!/usr/bin/env bash
# bptt's main job: train a character-level GRU on the default corpus (Python's own standard
# library, read from this interpreter) for a short run, then sample from the best checkpoint.
# Extra arguments go to `bptt train` (e.g. --steps 3000 --hidden-size 512).
source "$(dirname "$0")/env.sh" core
out="${BPTT_OUT:-runs/demo}"
bptt train --out "$out" --overwrite --steps 1000 --eval-every 200 "$@"
echo "--- sample (bptt sample $out/best.safetensors --prime 'def ' -n 400 --temperature 0.8) ---"
bptt sample "$out/best.safetensors" --prime "def " -n 400 --temperature 0.8 --seed 1
