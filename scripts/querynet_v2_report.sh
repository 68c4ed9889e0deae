#!/usr/bin/env bash
# Regenerates docs/results/querynet-v2/ (issue 14: Query-Net v2): image -> label per style with each
# source held out of its own head, description -> label and the Query-Aug table, audio examples per
# condition, and the SDRi of every query form with the bundled default checkpoint.
#   CORPUS=corpus WORK=runs/querynet scripts/querynet_v2_report.sh
# CHECKPOINT: the Separate-Net of the SDRi rows (default: the bundled default, v2); OUT: the results folder.
# WRITE_HEADS=1 also replaces the shipped opt-in heads v2 (src/omnisep/pretrained/encoder-heads/v2/heads.*; the default stays v1) and
# REBUILD_BANK=1 the shipped Query-Aug bank (src/omnisep/pretrained/query-aug/bank.*); WRITE_RECOGNISER=1 the shipped
# picture recogniser and picture calibration; NO_AUDIO=1 leaves the audio example conditions out.
# Packages are fetched once into $OMNISEP_CACHE/corpus-sources (npm @iconify-json/*, Debian
# gcompris-qt-data and wordnet-base); the picture features are cached in $WORK, so a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-corpus}
WORK=${WORK:-runs/querynet}
PY=${PYTHON:-python3}
heads=()
[ -n "${WRITE_HEADS:-}" ] && heads=(-o src/omnisep/pretrained/encoder-heads/v2/heads.safetensors)
# The picture recogniser (and the picture calibration fitted on it) is always trained; WRITE_RECOGNISER=1 ships both.
recogniser=(--recogniser "$WORK/recogniser-all.safetensors")
[ -n "${WRITE_RECOGNISER:-}" ] && recogniser=(--recogniser src/omnisep/pretrained/picture-recogniser/recogniser.safetensors
                                              --pictures-calibration src/omnisep/pretrained/query-aug/pictures.json)
nice -n 10 $PY -m omnisep.querynet.image_head --work "$WORK" "${heads[@]}" "${recogniser[@]}"
[ -n "${REBUILD_BANK:-}" ] && nice -n 10 $PY -m omnisep.querynet.words
nice -n 10 $PY -m omnisep.querynet.report --corpus "$CORPUS" --work "$WORK" --out "${OUT:-docs/results/querynet-v2}" \
    --every "${EVERY:-4}" --checkpoint "${CHECKPOINT:-src/omnisep/pretrained/v2}" ${NO_AUDIO:+--no-audio}
