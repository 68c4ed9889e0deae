#!/usr/bin/env bash
# Table 2 at small scale on the bundled corpus (docs/results/ablations-small/):
# five settings x 1200 steps (ngf 16, batch 8, 2 s crops), each scored with text and
# image queries on all 480 test mixtures. Needs corpus/ and runs/default-build/
# from scripts/build_default_model.py; takes about an hour on 2 CPU cores.
# SEED=2 ONLY="#4,#5" bash scripts/ablations_small.sh retrains some settings
# with another seed (results in docs/results/ablations-small/seed-2/).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/ablations-small}
mkdir -p "$WORK/corpus"
# The default model's subset, as a corpus folder: its manifest, the test
# mixtures, and the validation mixtures whose clips are all in the subset.
ln -sfn "$(realpath corpus/audio)" "$WORK/corpus/audio"
ln -sfn "$(realpath corpus/images)" "$WORK/corpus/images"
cp corpus/manifest-default.jsonl "$WORK/corpus/manifest.jsonl"
cp corpus/mixtures_test.jsonl corpus/labels.json "$WORK/corpus/"
python3 - "$WORK/corpus" <<'PY'
import json, sys
folder = sys.argv[1]
ids = {json.loads(line)["id"] for line in open(f"{folder}/manifest.jsonl")}
rows = [json.loads(line) for line in open("corpus/mixtures_val.jsonl")]
keep = [r for r in rows if r["target"] in ids and all(i in ids for i in r["interferers"])]
open(f"{folder}/mixtures_val.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in keep))
PY
SEED=${SEED:-1234}
RUNS="$WORK/runs"
RESULTS=docs/results/ablations-small
if [ "$SEED" != 1234 ]; then  # another training seed: how much of a row difference is seed noise
    RUNS="$WORK/runs-seed$SEED"
    RESULTS="$RESULTS/seed-$SEED"
fi
python3 benchmarks/ablations.py --corpus "$WORK/corpus" --out "$RUNS" --cache runs/default-build/cache \
    --encoder bundled --steps 1200 --batch-size 8 --ngf 16 --backend fast --eval-workers 1 --seed "$SEED" \
    ${ONLY:+--only "$ONLY"}
mkdir -p "$RESULTS"
cp "$RUNS/table2.md" "$RUNS/table2.csv" "$RESULTS/"
