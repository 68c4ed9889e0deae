#!/usr/bin/env bash
# Regenerates the query-tool results of issue 16 for a model (default: the bundled one):
#   docs/results/map-default/         omnisep map (paper Fig. 3) and its numbers
#   docs/results/auto-negative/       --negative auto: setting chosen on validation, reported on test
#   docs/results/scan-presence/       omnisep scan: threshold chosen on validation, precision/recall on test
# Needs the corpus and the embedding cache of the model's encoder (see scripts/evaluate_default_model.sh):
#   MODEL=runs/new/best OUT=docs/results/new- bash scripts/evaluate_query_tools.sh
# ALPHAS: the negative strengths the automatic negative sweeps (default 0.25,0.5,1; v2, whose logit-mode
# negatives want more: ALPHAS=0.5,1,2). STEPS=auto-negative or STEPS=presence runs only that part.
# SOURCES: where the automatic negative's candidates come from (default mixture: the scan; see
# omnisep.evaluation.auto_negative: residual-label, residual-audio, mixture-top2+residual, ...).
# AUTO_LIMIT=N: the text runs of the automatic negative use the first N validation and test mixtures;
# ALL_MODES=0 skips its image/audio/composed run (then the report shows text queries only).
# PRESENCE_VAL_LIMIT=N: the scan's threshold is chosen on the first N validation mixtures only (the lists are
# ordered by target class: the first N cover only the first classes); PRESENCE_VAL_EVERY=N: every N-th instead.
# The scans (and the automatic negative's choice) are verified as the model records (inference.scan.verify).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-src/omnisep/pretrained/v2}
CORPUS=${CORPUS:-corpus}
CACHE=${CACHE:-runs/default-build/cache}
OUT=${OUT:-docs/results/}
WORK=${WORK:-runs/query-tools}
ALPHAS=${ALPHAS:-0.25,0.5,1}
SOURCES=${SOURCES:-mixture}
# AUTO_ALPHA: the report chooses only among settings at this strength (the model's auto_alpha); default: any.
# AUTO_SETTING: the report shows this setting (the model's own) instead of the best on validation.
REPORT_ALPHA=()
[ -n "${AUTO_ALPHA:-}" ] && REPORT_ALPHA=(--alpha "$AUTO_ALPHA")
[ -n "${AUTO_SETTING:-}" ] && REPORT_ALPHA+=(--setting "$AUTO_SETTING")
AUTO_LIMITED=()
[ -n "${AUTO_LIMIT:-}" ] && AUTO_LIMITED=(--limit "$AUTO_LIMIT")
# AUTO_EVERY=N: only every N-th mixture (the lists are ordered by target class; a stride samples them all).
[ -n "${AUTO_EVERY:-}" ] && AUTO_LIMITED+=(--every "$AUTO_EVERY")
PRESENCE_LIMITED=()
[ -n "${PRESENCE_VAL_LIMIT:-}" ] && PRESENCE_LIMITED=(--limit "$PRESENCE_VAL_LIMIT")
[ -n "${PRESENCE_VAL_EVERY:-}" ] && PRESENCE_LIMITED+=(--every "$PRESENCE_VAL_EVERY")
STEPS=${STEPS:-map,auto-negative,presence}
mkdir -p "$WORK"
NICE=(nice -n 10)
step() { [[ ",$STEPS," == *",$1,"* ]]; }

# 1. The embedding map of the test clips (UMAP), with the free-form descriptions as extra text points.
step map && "${NICE[@]}" omnisep map "$CORPUS/manifest.jsonl" --model "$MODEL" --cache "$CACHE" \
    --descriptions configs/descriptions.json --heads-per-class 2 -o "${OUT}map-default"

# 2. Automatic negative query. Text queries are the bank's rows and need no cache: all validation and
#    test mixtures. Image, audio and composed queries (and the controls): the first 120 test mixtures.
#    The setting is chosen on the validation mixtures (text queries).
if step auto-negative; then
  "${NICE[@]}" omnisep evaluate-auto-negative run "$MODEL" "$CORPUS/mixtures_val.jsonl" --alphas "$ALPHAS" --sources "$SOURCES" \
      --modes text "${AUTO_LIMITED[@]}" --out "$WORK/auto-negative-text-val.json" --quiet &
  "${NICE[@]}" omnisep evaluate-auto-negative run "$MODEL" "$CORPUS/mixtures_test.jsonl" --alphas "$ALPHAS" --sources "$SOURCES" \
      --modes text "${AUTO_LIMITED[@]}" --out "$WORK/auto-negative-text-test.json" --quiet
  wait
  if [ "${ALL_MODES:-1}" != 0 ]; then
    "${NICE[@]}" omnisep evaluate-auto-negative run "$MODEL" "$CORPUS/mixtures_test.jsonl" --alphas "$ALPHAS" --sources "$SOURCES" \
        --cache "$CACHE" --limit 120 --out "$WORK/auto-negative-all-test120.json" --quiet
    omnisep evaluate-auto-negative report "${REPORT_ALPHA[@]}" --validation "$WORK/auto-negative-text-val.json" \
        --test "$WORK/auto-negative-all-test120.json" --test "$WORK/auto-negative-text-test.json" \
        --controls "$WORK/auto-negative-all-test120.json" --out "${OUT}auto-negative"
  else
    omnisep evaluate-auto-negative report "${REPORT_ALPHA[@]}" --validation "$WORK/auto-negative-text-val.json" \
        --test "$WORK/auto-negative-text-test.json" --out "${OUT}auto-negative"
  fi
fi

# 3. Scan presence: scan every validation and test mixture, choose the threshold on validation.
if step presence; then
  "${NICE[@]}" omnisep evaluate-presence run "$MODEL" "$CORPUS/mixtures_val.jsonl" "${PRESENCE_LIMITED[@]}" \
      --out "$WORK/presence-val.npz" --quiet &
  "${NICE[@]}" omnisep evaluate-presence run "$MODEL" "$CORPUS/mixtures_test.jsonl" --out "$WORK/presence-test.npz" --quiet
  wait
  omnisep evaluate-presence report "$WORK/presence-val.npz" "$WORK/presence-test.npz" --out "${OUT}scan-presence"
fi

# 4. Pictures for docs/demo.md: the scan timeline of a bundled example.
if step presence; then
  omnisep scan examples/owl_and_piano.wav --model "$MODEL" --export "$WORK" --overwrite > /dev/null
  cp "$WORK/owl_and_piano.timeline.png" "${OUT}scan-presence/owl_and_piano.timeline.png"
fi
