#!/usr/bin/env bash
# Regenerates the query-tool results of issue 16 for a model (default: the bundled one):
#   docs/results/map-default/         omnisep map (paper Fig. 3) and its numbers
#   docs/results/auto-negative/       --negative auto: setting chosen on validation, reported on test
#   docs/results/scan-presence/       omnisep scan: threshold chosen on validation, precision/recall on test
# Needs the corpus and the embedding cache of the model's encoder (see scripts/evaluate_default_model.sh):
#   MODEL=runs/new/best OUT=docs/results/new- bash scripts/evaluate_query_tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-src/omnisep/pretrained/default}
CORPUS=${CORPUS:-corpus}
CACHE=${CACHE:-runs/default-build/cache}
OUT=${OUT:-docs/results/}
WORK=${WORK:-runs/query-tools}
mkdir -p "$WORK"
NICE=(nice -n 10)

# 1. The embedding map of the test clips (UMAP), with the free-form descriptions as extra text points.
"${NICE[@]}" omnisep map "$CORPUS/manifest.jsonl" --model "$MODEL" --cache "$CACHE" \
    --descriptions configs/descriptions.json --heads-per-class 2 -o "${OUT}map-default"

# 2. Automatic negative query. Text queries are the bank's rows and need no cache: all validation and
#    test mixtures. Image, audio and composed queries (and the controls): the first 120 test mixtures.
#    The setting is chosen on the validation mixtures (text queries).
"${NICE[@]}" omnisep evaluate-auto-negative run "$MODEL" "$CORPUS/mixtures_val.jsonl" \
    --modes text --out "$WORK/auto-negative-text-val.json" --quiet &
"${NICE[@]}" omnisep evaluate-auto-negative run "$MODEL" "$CORPUS/mixtures_test.jsonl" \
    --modes text --out "$WORK/auto-negative-text-test.json" --quiet
wait
"${NICE[@]}" omnisep evaluate-auto-negative run "$MODEL" "$CORPUS/mixtures_test.jsonl" \
    --cache "$CACHE" --limit 120 --out "$WORK/auto-negative-all-test120.json" --quiet
omnisep evaluate-auto-negative report --validation "$WORK/auto-negative-text-val.json" \
    --test "$WORK/auto-negative-all-test120.json" --test "$WORK/auto-negative-text-test.json" \
    --controls "$WORK/auto-negative-all-test120.json" --out "${OUT}auto-negative"

# 3. Scan presence: scan every validation and test mixture, choose the threshold on validation.
"${NICE[@]}" omnisep evaluate-presence run "$MODEL" "$CORPUS/mixtures_val.jsonl" --out "$WORK/presence-val.npz" --quiet &
"${NICE[@]}" omnisep evaluate-presence run "$MODEL" "$CORPUS/mixtures_test.jsonl" --out "$WORK/presence-test.npz" --quiet
wait
omnisep evaluate-presence report "$WORK/presence-val.npz" "$WORK/presence-test.npz" --out "${OUT}scan-presence"

# 4. Pictures for docs/demo.md: the scan timeline of a bundled example.
omnisep scan examples/owl_and_piano.wav --model "$MODEL" --export "$WORK" --overwrite > /dev/null
cp "$WORK/owl_and_piano.timeline.png" "${OUT}scan-presence/owl_and_piano.timeline.png"
