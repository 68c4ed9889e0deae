#!/usr/bin/env bash
# Trains the two Separate-Net v2 candidates (kinds "paper" and "film") side by
# side on one GPU for the same number of steps, from a corpus pack
# (scripts/pack_corpus.py), and exports their best checkpoints as float16.
#   PACK=.pack/train OUT=out BUDGET=380 bash scripts/train_v2_gpu.sh
# A short probe run of each measures mixtures per second on this machine; the
# step count is then set so that training fits BUDGET seconds, and the runs
# continue from the probe (same seed, same batches: a resumed run is exact).
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-.pack/train}
OUT=${OUT:-out}
BUDGET=${BUDGET:-380}
PROBE=${PROBE:-150}
KINDS=${KINDS:-"paper film"}
RUNS=${RUNS:-/tmp/omnisep-v2}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
WALL=${WALL:-0}  # when set: seconds this whole script may take (the runs are stopped in time to export)
mkdir -p "$OUT" "$RUNS"
trap 'for f in "$RUNS"/*.log; do echo "== $f"; tail -n 25 "$f"; done; cat "$RUNS"/*.log > "$OUT/train.log" 2>/dev/null || true' EXIT
common=(--set encoder.from_cache=true --set "data.train_manifest=\"$PACK/manifest.jsonl\""
        --set "data.cache=\"$PACK/cache\"" --set "data.val_mixtures=\"$PACK/mixtures_val.jsonl\""
        --set "device=\"$DEVICE\"")
# shellcheck disable=SC2206
extra=($EXTRA)

run_all() {  # run_all STEPS DECAY_STEPS VAL_EVERY TIMEOUT
  local pids=()
  for kind in $KINDS; do
    timeout "$4" python3 -m omnisep train "configs/v2-$kind.toml" "${common[@]}" "${extra[@]}" \
      --set "out_dir=\"$RUNS/$kind\"" --set "steps=$1" --set "optim.decay_steps=$2" \
      --set "val_every=$3" --set "checkpoint_every=$3" >>"$RUNS/$kind.log" 2>&1 &
    pids+=($!)
  done
  local status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  return $status
}

started=$(date +%s)
# The probe's steps lie inside the warm-up, where the learning rate does not
# depend on where the decay ends, so the real runs can continue from them.
run_all "$PROBE" 100000 100000 300
steps=$(python3 - "$RUNS" "$PROBE" "$BUDGET" $KINDS <<'PY'
import json, sys
runs, probe, budget, kinds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
rates = []
for kind in kinds:
    rows = [json.loads(l) for l in open(f"{runs}/{kind}/metrics.jsonl") if '"samples_per_s"' in l]
    rows = rows[1:] or rows  # the first interval includes start-up and cuDNN's search
    rates.append(sum(r["samples_per_s"] for r in rows) / len(rows))
import tomllib
batch = tomllib.load(open(f"configs/v2-{kinds[0]}.toml", "rb"))["optim"]["batch_size"]
print(probe + int(min(rates) * budget / batch), file=sys.stdout)
print(f"probe rates (mixtures/s, side by side): {dict(zip(kinds, [round(r) for r in rates]))}", file=sys.stderr)
PY
)
echo "probe took $(( $(date +%s) - started )) s; training to step $steps"
val_every=$(( (steps + 4) / 5 ))
limit=$(( ${BUDGET%.*} + 150 ))
if [ "$WALL" -gt 0 ]; then left=$(( WALL - ($(date +%s) - started) - 25 )); [ "$left" -lt "$limit" ] && limit=$left; fi
run_all "$steps" "$(( steps > 1000 ? steps : 1000 ))" "$val_every" "$limit" || echo "a run ended early (status $?); exporting what it saved"
for kind in $KINDS; do
  source="$RUNS/$kind/best"; [ -d "$source" ] || source="$RUNS/$kind/last"
  python3 scripts/export_half.py "$source" "$OUT/$kind" || true
  cp "$RUNS/$kind/metrics.jsonl" "$OUT/$kind/metrics.jsonl" || true
done
echo "total $(( $(date +%s) - started )) s"
