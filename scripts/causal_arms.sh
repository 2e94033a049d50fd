#!/bin/bash
# Notebook 08's measurement (issue 15), end to end: train the arms next to a run folder's phase-1 adapters, then run
# notebook 08 over them. docs/causal.md's table came from this script's notebook step; its arms were trained before it
# existed, with these same `workbench train sft` lines (their config.json files record the settings).
#
#   scripts/causal_arms.sh RUN OUT     e.g. scripts/causal_arms.sh runs/arithmetic runs/causal
#
# RUN: a `workbench run phase1 --out RUN --seeds 3` folder (data/, configs/phase1.yaml, seed-<s>/phase1_adapter).
# OUT: where the arms go, one folder per arm and seed:
#   qk-seed-<s>                 phase 1 with LoRA on q_proj,k_proj instead of v_proj,o_proj
#   noclip-seed-<s>             phase 1 as the guide's file is written: no gradient clipping
#   phase2-from-phase1-seed-<s> phase 2 (configs/phase2.yaml) from RUN's phase-1 adapter, layers 0-16 frozen
#   phase2-from-base-seed-<s>   the control: phase 2 from the base model (configs/phase2_control.yaml)
# An arm whose adapter exists is kept, so a stopped run resumes; notebook 08 caches its measurement per adapter.
# SEEDS="42 43 44" (default) picks the seeds; DOCS=docs/causal.md README=README.md also rewrite those pages' blocks.
# On SmolLM2-135M and 2 CPU cores one phase-1 arm takes 10-20 min, a phase-2 arm 8-14 min.
set -euo pipefail
RUN=${1:?usage: scripts/causal_arms.sh RUN OUT}
OUT=${2:?usage: scripts/causal_arms.sh RUN OUT}
SEEDS=${SEEDS:-42 43 44}
BIN=${BIN:-.venv/bin}
DATA=(--data "$RUN/data/train.jsonl" --eval-data "$RUN/data/heldout.jsonl")
for s in $SEEDS; do
  [ -f "$RUN/seed-$s/phase1_adapter/adapter_config.json" ] || {
    echo "$RUN/seed-$s/phase1_adapter has no adapter: run \`workbench run phase1 --out $RUN --seeds 3\` first" >&2
    exit 2
  }
done
mkdir -p "$OUT"

train() {  # train OUT_FOLDER ARGS...: one SFT run unless its adapter exists; its log beside it
  local folder=$1
  shift
  [ -f "$folder/adapter_config.json" ] && return
  echo "$(date +%T) training $folder"
  "$BIN/workbench" train sft "${DATA[@]}" -o "$folder" --no-progress "$@" >"$folder.log" 2>&1 || {
    echo "training $folder failed: see $folder.log" >&2
    exit 2
  }
}

for s in $SEEDS; do
  train "$OUT/qk-seed-$s" --config "$RUN/configs/phase1.yaml" --seed "$s" --lora-targets q_proj,k_proj
  train "$OUT/noclip-seed-$s" --config "$RUN/configs/phase1.yaml" --seed "$s" --max-grad-norm 0
  train "$OUT/phase2-from-phase1-seed-$s" --config configs/phase2.yaml --seed "$s" \
    --adapter "$RUN/seed-$s/phase1_adapter" --freeze-layers 0-16
  train "$OUT/phase2-from-base-seed-$s" --config configs/phase2_control.yaml --seed "$s"
done

arm() {  # arm PATTERN: a JSON list of the folder per seed
  local out=() s
  for s in $SEEDS; do out+=("\"$(printf "$1" "$s")\""); done
  (IFS=,; echo "[${out[*]}]")
}
quoted() { [ -n "${1:-}" ] && echo "\"$1\"" || echo null; }
ARMS="{\"vo\": $(arm "$RUN/seed-%s/phase1_adapter"), \"qk\": $(arm "$OUT/qk-seed-%s"),
  \"routing\": $(arm "$OUT/phase2-from-phase1-seed-%s"), \"control\": $(arm "$OUT/phase2-from-base-seed-%s"),
  \"noclip\": $(arm "$OUT/noclip-seed-%s")}"
SEED_LIST="[$(echo $SEEDS | tr ' ' ,)]"
mkdir -p "$OUT/nb08"
echo "$(date +%T) notebook 08 -> $OUT/nb08/"
"$BIN/papermill" notebooks/08_is_the_classifier_used.ipynb "$OUT/nb08/08_is_the_classifier_used.ipynb" --cwd . \
  -y "{\"arms\": $ARMS, \"seeds\": $SEED_LIST, \"n_pairs\": 50, \"n_prompts\": 40, \"output_dir\": \"$OUT/nb08\",
  \"run_dir\": \"$RUN\", \"docs_page\": $(quoted "${DOCS:-}"), \"readme\": $(quoted "${README:-}")}"
