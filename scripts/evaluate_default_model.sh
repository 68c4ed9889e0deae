#!/usr/bin/env bash
# Regenerates docs/results/ for the bundled default model: Table 1 (every
# query mode, with and without a negative query, next to the unprocessed
# mixture and the oracle masks), Table 3 (Query-Aug with free-form
# descriptions) and Fig. 2 (alpha sweep). Needs the corpus and the embedding
# cache from scripts/build_default_model.py:
#   omnisep corpus build corpus/ && python scripts/build_default_model.py corpus/ runs/default-build
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-src/omnisep/pretrained/default}
COMMON=(--manifest corpus/manifest-default.jsonl --cache runs/default-build/cache --backend fast --workers 2 --quiet)

# Table 1 + Table 3 on all 480 test mixtures.
omnisep evaluate "$MODEL" corpus/mixtures_test.jsonl "${COMMON[@]}" \
    --descriptions configs/descriptions.json --out docs/results/default
# Fig. 2: proportional vs naive negative queries, alpha 0..2, first 120 test mixtures.
omnisep evaluate "$MODEL" corpus/mixtures_test.jsonl "${COMMON[@]}" --no-oracles --modes text \
    --alpha-sweep 0:2:0.25 --sweep-modes text --limit 120 --out docs/results/default-alpha-sweep
python3 scripts/plot_training.py runs/default/metrics.jsonl docs/images/default-training.png
