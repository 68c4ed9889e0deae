#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (or CI) for omnisep: system tools, then
# the package with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)             # museval imports need the binary
command -v espeak-ng >/dev/null || need+=(espeak-ng)       # corpus: speech
command -v fluidsynth >/dev/null || need+=(fluidsynth)     # corpus: instruments
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
ldconfig -p 2>/dev/null | grep -q "libcairo.so.2" || need+=(libcairo2)  # cairosvg: image head v2 pictures
# The demo's browser test drives Debian's chromium through Playwright (never
# `playwright install`, which downloads a browser build).
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  # --no-install-recommends: fluidsynth would otherwise pull a soundfont that
  # is reserved for an independent benchmark.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
$PY -m pip install -q "torch==2.13.0" 2>/dev/null || $PY -m pip install -q "torch>=2.2"
$PY -m pip install -q -e ".[test,eval,corpus]"
# Only for the test that checks the shipped aisfx CNN against its source package:
# aisfx pins ancient numpy/librosa and its model code needs neither, so skip its deps.
$PY -m pip install -q --no-deps "aisfx==0.1.2"
# Optional: convert EfficientNet-Lite0's pickle to safetensors now instead of on first use.
$PY -m omnisep encoders convert >/dev/null
