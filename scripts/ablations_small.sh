#!/usr/bin/env bash
# Table 2 at small scale on the bundled corpus (docs/results/ablations-small/):
# five settings x 1500 steps (ngf 16, batch 8), each scored with text and
# image queries on all 480 test mixtures. Needs corpus/ and runs/default-build/
# from scripts/build_default_model.py; takes about an hour on 2 CPU cores.
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
python3 benchmarks/ablations.py --corpus "$WORK/corpus" --out "$WORK/runs" --cache runs/default-build/cache \
    --encoder bundled --steps 1500 --batch-size 8 --ngf 16 --backend fast --eval-workers 1
mkdir -p docs/results/ablations-small
cp "$WORK/runs/table2.md" "$WORK/runs/table2.csv" docs/results/ablations-small/
