"""Speech from espeak-ng: random sentences in several English voices, speeds and pitches.

Sentences are drawn from a small grammar written for this corpus, so every
clip says something new. Some voice variants are held out of train/val and
spoken only in test, so speech queries are tested on unheard voices.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from omnisep.data.corpus import SAMPLE_RATE
from omnisep.data.corpus.augment import augment, decode, fade, fit_length
from omnisep.data.corpus.family import Clip, SourcePackage
from omnisep.errors import OmniSepError

LABEL = "speech"
PACKAGE = "debian:espeak-ng"
LICENCE = "GPL-3.0-or-later (espeak-ng and its voice data); sentences written for omnisep"

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "klatt", "klatt2", "Andy", "Annie", "adam",
                  "belinda", "boris", "david", "edward", "grandpa", "linda", "max", "norbert", "paul")
TEST_VARIANTS = ("m7", "f4", "klatt4", "anika", "steph", "john")
# Heard only in the shifted validation split (``omnisep corpus shift``), never in train or test.
SHIFT_VARIANTS = ("m6", "m8", "f5", "klatt3", "aunty", "caleb", "quincy", "shelby")

SUBJECTS = ("the farmer", "my neighbour", "a tall stranger", "the old captain", "our teacher", "the little girl",
            "the baker", "a friendly dog", "the bus driver", "my grandmother", "the new doctor", "everyone")
VERBS = ("walked to", "looked at", "painted", "forgot about", "talked about", "cleaned", "found", "sold",
         "carried", "waited near", "repaired", "photographed")
OBJECTS = ("the red door", "a wooden boat", "the station", "an empty garden", "the blue kitchen", "the market",
           "a broken clock", "the river bank", "three green apples", "the library", "an old bicycle", "the bridge")
TIMES = ("this morning", "last winter", "before lunch", "after the storm", "on Sunday", "at midnight",
         "every evening", "yesterday", "in the spring", "before the train left")
QUESTIONS = ("Do you know where {o} is?", "Have you seen {s} today?", "Why did {s} leave so early?",
             "Could you bring me {o}, please?", "What time does {o} open?")
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")


def sentence(rng: np.random.Generator) -> str:
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    kind = rng.random()
    if kind < 0.55:
        text = f"{pick(SUBJECTS)} {pick(VERBS)} {pick(OBJECTS)} {pick(TIMES)}."
    elif kind < 0.8:
        text = pick(QUESTIONS).format(s=pick(SUBJECTS), o=pick(OBJECTS))
    else:
        text = f"We need {pick(NUMBERS)} of them by {pick(TIMES)}, and {pick(NUMBERS)} more for {pick(OBJECTS)}."
    return text[0].upper() + text[1:]


def espeak_version() -> str:
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
        return out.split("text-to-speech:")[-1].split()[0] if "text-to-speech:" in out else out.strip()
    except OSError:
        return "unknown"


class SpeechFamily:
    """Source family: espeak-ng speech; every clip is its own source (a new seed and text)."""

    name = "espeak-ng"

    def __init__(self):
        if shutil.which("espeak-ng") is None:
            raise OmniSepError("the speech class needs the 'espeak-ng' command: install the Debian package espeak-ng.")

    def labels(self) -> set[str]:
        return {LABEL}

    def available(self, label: str, split: str) -> bool:
        return label == LABEL

    def speak(self, text: str, voice: str, speed: int, pitch: int, gap: int) -> np.ndarray:
        proc = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-g", str(gap), "--stdout", text],
            capture_output=True,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise OmniSepError(f"espeak-ng failed for voice '{voice}': {proc.stderr.decode(errors='replace').strip()}")
        return decode(proc.stdout, name=f"espeak-ng voice {voice}")

    def make(self, label: str, split: str, rng: np.random.Generator, clip_id: str) -> Clip:
        variants = {"test": TEST_VARIANTS, "shift": SHIFT_VARIANTS}.get(split, TRAIN_VARIANTS)
        voice = f"{ACCENTS[int(rng.integers(len(ACCENTS)))]}+{variants[int(rng.integers(len(variants)))]}"
        speed, pitch, gap = int(rng.integers(120, 200)), int(rng.integers(20, 80)), int(rng.integers(0, 6))
        seconds = float(rng.uniform(4.0, 8.0))
        length = int(seconds * SAMPLE_RATE)
        parts, total = [], 0
        while total < length:
            spoken = self.speak(sentence(rng), voice, speed, pitch, gap)
            pause = np.zeros(int(rng.uniform(0.2, 0.8) * SAMPLE_RATE), np.float32)
            parts += [spoken, pause]
            total += len(spoken) + len(pause)
        audio = fit_length(np.concatenate(parts), length)
        audio = augment(fade(audio), rng)
        return Clip(audio, (f"espeak-ng:{clip_id}:{voice}",), PACKAGE, LICENCE)

    def packages(self) -> list[SourcePackage]:
        return [SourcePackage(PACKAGE, espeak_version(), LICENCE, "speech (voices: " + ", ".join(ACCENTS) + ")")]
