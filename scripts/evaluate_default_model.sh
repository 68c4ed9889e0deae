#!/usr/bin/env bash
# Regenerates docs/results/ for a model (the bundled default unless MODEL is
# set): Table 1 (every query mode, with and without a negative query, next to
# the unprocessed mixture and the oracle masks), Table 3 (Query-Aug with
# free-form descriptions), what users notice (usage.md: absent-query energy,
# selectivity, per-class SDRi, scan accuracy) and Fig. 2 (alpha sweep).
# Needs the corpus and the embedding cache from scripts/build_default_model.py:
#   omnisep corpus build corpus/ && python scripts/build_default_model.py corpus/ runs/default-build
#   MODEL=src/omnisep/pretrained/v1 OUT=docs/results/v1 bash scripts/evaluate_default_model.sh
# SWEEP=0 skips the alpha sweep; TRAINING=0 skips the training-curve plot;
# LIMIT=N scores only the first N test mixtures (a quick look on a busy machine).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-src/omnisep/pretrained/v3}
OUT=${OUT:-docs/results/v3}
WORKERS=${WORKERS:-2}
# CACHE: the embedding cache of the model's encoder (a model trained with the image heads v2 needs one made
# with `omnisep embed ... --heads v2`).
CACHE=${CACHE:-runs/default-build/cache}
COMMON=(--manifest corpus/manifest-default.jsonl --cache "$CACHE" --backend fast --workers "$WORKERS" --quiet)
LIMITED=()
[ -n "${LIMIT:-}" ] && LIMITED=(--limit "$LIMIT")

# Table 1 + Table 3 + usage on all 480 test mixtures.
omnisep evaluate "$MODEL" corpus/mixtures_test.jsonl "${COMMON[@]}" \
    --descriptions configs/descriptions.json --usage "${LIMITED[@]}" --out "$OUT"
# Fig. 2: proportional vs naive negative queries, alpha 0..2, first 120 test mixtures.
if [ "${SWEEP:-1}" != 0 ]; then
  omnisep evaluate "$MODEL" corpus/mixtures_test.jsonl "${COMMON[@]}" --no-oracles --modes text \
      --alpha-sweep 0:2:0.25 --sweep-modes text --limit 120 --out "$OUT-alpha-sweep"
fi
if [ "${TRAINING:-1}" != 0 ] && [ -f runs/default/metrics.jsonl ]; then
  python3 scripts/plot_training.py runs/default/metrics.jsonl docs/images/default-training.png
fi
