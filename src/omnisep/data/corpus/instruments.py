"""Sampled-instrument renders of random phrases from the FluidR3 General MIDI soundfont.

Every clip is a new random phrase (scale, tempo, rhythm, articulation,
dynamics, chords or arpeggios where the instrument plays them) rendered with
one of several GM programs of the class, so that the model hears music in
that timbre rather than one recording. For classes with several programs the
last one is held out of train/val and used only in test (unseen timbre).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from omnisep.data.corpus import SAMPLE_RATE
from omnisep.data.corpus.augment import active_fraction, augment, fade, fit_length
from omnisep.data.corpus.family import Clip, SourcePackage
from omnisep.errors import OmniSepError

# Named explicitly: the default-GM.sf2 symlink may point at another soundfont.
FLUID_R3_GM = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PACKAGE = "debian:fluid-soundfont-gm"
LICENCE = "MIT"
RENDER_RATE = 32000  # rendered above 16 kHz, then resampled, to keep fluidsynth's aliasing out of the band

DRUM_CHANNEL = 9
DRUM_BANK = 128


@dataclass(frozen=True)
class Instrument:
    programs: tuple[int, ...]  # GM program numbers (0-based); the last is test-only when there are several
    low: int  # MIDI pitch range the phrases stay in
    high: int
    polyphonic: bool = False  # plays chords / arpeggios
    sustained: bool = False  # bowed / blown: mostly legato
    drone: int | None = None  # a held low note under the phrase (bagpipes)


INSTRUMENTS: dict[str, Instrument] = {
    "playing accordion": Instrument((21, 23), 53, 81, polyphonic=True, sustained=True),
    "playing acoustic guitar": Instrument((24, 25), 40, 76, polyphonic=True),
    "playing bagpipes": Instrument((109,), 67, 81, sustained=True, drone=45),
    "playing banjo": Instrument((105,), 48, 79, polyphonic=True),
    "playing cello": Instrument((42,), 36, 69, sustained=True),
    "playing clarinet": Instrument((71,), 50, 84, sustained=True),
    "playing flute": Instrument((73, 72), 60, 93, sustained=True),
    "playing piano": Instrument((0, 1, 2), 33, 96, polyphonic=True),
    "playing saxophone": Instrument((64, 65, 66, 67), 44, 80, sustained=True),
    "playing trumpet": Instrument((56, 59), 54, 82, sustained=True),
    "playing tuba": Instrument((58,), 28, 58, sustained=True),
    "playing violin": Instrument((40, 110), 55, 93, sustained=True),
    "playing xylophone": Instrument((13,), 65, 96),
    "playing harp": Instrument((46,), 36, 91, polyphonic=True),
    "playing trombone": Instrument((57,), 40, 72, sustained=True),
    "playing organ": Instrument((19, 16, 20), 36, 84, polyphonic=True, sustained=True),
    "bell ringing": Instrument((14, 112), 60, 84),
}

# FluidR3 drum kits (bank 128): Standard, Room, Power, Electronic, TR-808, Brush | Jazz (test only).
DRUM_KITS = (0, 8, 16, 24, 25, 40, 32)
DRUMS = "playing drums"

# The shifted validation split (``omnisep corpus shift``): programs no other split plays, for the classes
# where FluidR3 has another instrument of the same name. Chosen by name, before any result on them:
# honky-tonk piano, pan flute, marimba, percussive and rock organ, the orchestra kit.
SHIFT_PROGRAMS: dict[str, tuple[int, ...]] = {
    "playing piano": (3,), "playing flute": (75,), "playing xylophone": (12,), "playing organ": (17, 18),
}
SHIFT_KITS = (48,)

SCALES = (
    (0, 2, 4, 5, 7, 9, 11),  # major
    (0, 2, 3, 5, 7, 8, 10),  # natural minor
    (0, 2, 4, 7, 9),  # major pentatonic
    (0, 3, 5, 7, 10),  # minor pentatonic
    (0, 2, 3, 5, 7, 9, 10),  # dorian
    (0, 2, 4, 5, 7, 9, 10),  # mixolydian
)


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    length: float
    pitch: int
    velocity: int
    channel: int = 0


def programs_for_split(programs: tuple[int, ...], split: str, rng: np.random.Generator) -> int:
    """Pick a program: train/val never see the held-out last one; test plays it half of the time."""
    if len(programs) == 1:
        return programs[0]
    if split == "test" and rng.random() < 0.5:
        return programs[-1]
    return int(rng.choice(programs[:-1]))


def phrase(instrument: Instrument, seconds: float, rng: np.random.Generator) -> list[Note]:
    """A random phrase: a scale-bound random walk with rests, chords or arpeggios where fitting."""
    tempo = rng.uniform(60, 160)
    beat = 60.0 / tempo
    scale = SCALES[rng.integers(len(SCALES))]
    root = int(rng.integers(0, 12))
    pitches = [p for p in range(instrument.low, instrument.high + 1) if (p - root) % 12 in scale]
    # A narrower random register inside the instrument's range, so clips differ in pitch height.
    span = max(len(pitches) // 2, min(len(pitches), 8))
    first = int(rng.integers(0, len(pitches) - span + 1))
    pitches = pitches[first : first + span]
    style = rng.choice(["melody", "chords", "arpeggio"]) if instrument.polyphonic else "melody"
    if instrument.sustained:
        articulation = rng.uniform(0.75, 1.05)
        durations, weights = (0.5, 1, 1.5, 2, 3, 4), (2, 4, 2, 3, 1, 1)
    else:
        articulation = rng.uniform(0.3, 1.0)
        durations, weights = (0.25, 0.5, 1, 1.5, 2), (2, 4, 4, 1, 1)
    weights = np.asarray(weights, float) / sum(weights)
    base_velocity = rng.uniform(55, 115)
    index = len(pitches) // 2
    notes: list[Note] = []
    t = rng.uniform(0.0, 0.3)
    arpeggio_step = 0
    while t < seconds - 0.2:
        if style == "arpeggio":
            length = beat * rng.choice((0.25, 0.5))
        else:
            length = beat * rng.choice(durations, p=weights)
        if rng.random() < 0.08:  # rest
            t += length
            continue
        velocity = int(np.clip(base_velocity + rng.normal(0, 10), 25, 127))
        if style == "arpeggio":
            if arpeggio_step % 4 == 0:
                index = int(np.clip(index + rng.integers(-3, 4), 0, len(pitches) - 5))
            chord = (0, 2, 4, 7)
            pitch = pitches[min(index + chord[arpeggio_step % 4] % 7, len(pitches) - 1)]
            arpeggio_step += 1
            notes.append(Note(t, length * 1.5, pitch, velocity))
        else:
            index = int(np.clip(index + rng.choice((-3, -2, -1, -1, 0, 1, 1, 2, 3)), 0, len(pitches) - 1))
            notes.append(Note(t, length * articulation, pitches[index], velocity))
            if style == "chords" and rng.random() < 0.7:
                for degree in (2, 4):
                    if index + degree < len(pitches):
                        notes.append(Note(t, length * articulation, pitches[index + degree], max(velocity - 10, 20)))
        t += length
    if instrument.drone is not None and rng.random() < 0.8:
        # drones sound the key note, an octave or two under the chanter
        notes.append(Note(0.0, seconds, instrument.drone + (root - instrument.drone) % 12, 70, channel=1))
    return notes


# General MIDI percussion keys
KICK, SNARE, SNARE_ALT, HAT_CLOSED, HAT_PEDAL, HAT_OPEN, CRASH, RIDE = 36, 38, 40, 42, 44, 46, 49, 51
TOMS = (41, 43, 45, 47, 48, 50)

KICK_PATTERNS = (
    (0, 8),
    (0, 6, 8),
    (0, 3, 8, 10),
    (0, 7, 10),
    (0, 4, 8, 12),
    (0, 10),
)


def drum_phrase(seconds: float, rng: np.random.Generator) -> list[Note]:
    """A groove of 16th-note steps with random kick pattern, hats or ride, swing, ghost notes and fills."""
    tempo = rng.uniform(70, 170)
    step = 60.0 / tempo / 4
    kick = KICK_PATTERNS[rng.integers(len(KICK_PATTERNS))]
    snare_key = SNARE if rng.random() < 0.7 else SNARE_ALT
    cymbal = RIDE if rng.random() < 0.25 else HAT_CLOSED
    cymbal_every = int(rng.choice((1, 2, 2, 4)))
    swing = rng.uniform(0, 0.3) if rng.random() < 0.4 else 0.0
    loudness = rng.uniform(0.6, 1.0)
    n_steps = int(seconds / step)
    fill_from = n_steps - 16 + 12 if rng.random() < 0.5 else n_steps + 1
    notes: list[Note] = []

    def hit(i: int, key: int, velocity: float) -> None:
        t = i * step + (swing * step if i % 2 else 0.0) + rng.normal(0, 0.006)
        notes.append(Note(max(t, 0.0), 0.2, key, int(np.clip(velocity * loudness + rng.normal(0, 8), 15, 127)), DRUM_CHANNEL))

    if rng.random() < 0.5:
        hit(0, CRASH, 110)
    for i in range(n_steps):
        position = i % 16
        if i >= fill_from:
            if rng.random() < 0.8:
                hit(i, TOMS[min(len(TOMS) - 1, (i - fill_from) * 2 % len(TOMS))] if rng.random() < 0.7 else snare_key, 100)
            continue
        if position in kick:
            hit(i, KICK, 105)
        if position in (4, 12):
            hit(i, snare_key, 105)
        elif rng.random() < 0.06:
            hit(i, snare_key, 45)  # ghost note
        if position % cymbal_every == 0:
            open_hat = cymbal == HAT_CLOSED and position == 14 and rng.random() < 0.3
            hit(i, HAT_OPEN if open_hat else cymbal, 80 if position % 4 == 0 else 60)
    return [n for n in notes if n.start < seconds - 0.05]


class GMRenderer:
    """Renders note lists with one FluidR3 GM synth, loaded once and reset between clips."""

    def __init__(self, soundfont: Path = FLUID_R3_GM):
        if not soundfont.is_file():
            raise OmniSepError(f"the soundfont '{soundfont}' is missing: install the Debian package fluid-soundfont-gm.")
        try:
            import fluidsynth
        except ImportError:  # the package (extra "corpus") or the libfluidsynth it loads is missing
            raise OmniSepError(
                "rendering instruments needs FluidSynth: pip install 'omnisep[corpus]' and the system library "
                "(Debian: apt-get install --no-install-recommends fluidsynth)."
            ) from None

        self.synth = fluidsynth.Synth(
            samplerate=float(RENDER_RATE), gain=0.3,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 128},
        )
        self.font = self.synth.sfload(str(soundfont))
        if self.font < 0:
            raise OmniSepError(f"fluidsynth could not load the soundfont '{soundfont}'.")

    def render(self, notes: list[Note], programs: dict[int, tuple[int, int]], seconds: float,
               detune_cents: float = 0.0, modulation: int = 0) -> np.ndarray:
        """Play `notes` (program per channel as (bank, program)); returns float32 mono at 16 kHz."""
        synth = self.synth
        synth.system_reset()
        for channel, (bank, program) in programs.items():
            synth.program_select(channel, self.font, bank, program)
            synth.pitch_bend(channel, int(np.clip(detune_cents / 200.0 * 8192, -8192, 8191)))
            synth.cc(channel, 1, modulation)
        events = []
        for note in notes:
            events.append((note.start, 1, note))
            events.append((min(note.start + note.length, seconds), 0, note))
        events.sort(key=lambda e: (e[0], e[1]))
        total = int(seconds * RENDER_RATE)
        chunks = []
        cursor = 0
        for time, is_on, note in events:
            position = min(int(time * RENDER_RATE), total)
            if position > cursor:
                chunks.append(synth.get_samples(position - cursor))
                cursor = position
            if is_on:
                synth.noteon(note.channel, note.pitch, note.velocity)
            else:
                synth.noteoff(note.channel, note.pitch)
        if total > cursor:
            chunks.append(synth.get_samples(total - cursor))
        for channel in programs:
            synth.all_sounds_off(channel)
        stereo = np.concatenate(chunks).astype(np.float32) / 32768.0
        mono = stereo.reshape(-1, 2).mean(axis=1)
        return soxr.resample(mono, RENDER_RATE, SAMPLE_RATE, quality="HQ").astype(np.float32)


def soundfont_version() -> str:
    """The installed fluid-soundfont-gm version, for sources.md."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fluid-soundfont-gm"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


class InstrumentFamily:
    """Source family: General MIDI renders (one render = one source 'recording', split by its seed)."""

    name = "gm-render"

    def __init__(self, soundfont: Path = FLUID_R3_GM):
        self.soundfont = soundfont
        self._renderer: GMRenderer | None = None

    @property
    def renderer(self) -> GMRenderer:
        if self._renderer is None:
            self._renderer = GMRenderer(self.soundfont)
        return self._renderer

    def labels(self) -> set[str]:
        return set(INSTRUMENTS) | {DRUMS}

    def available(self, label: str, split: str) -> bool:
        if split == "shift":
            return label in SHIFT_PROGRAMS or label == DRUMS
        return label in self.labels()

    def make(self, label: str, split: str, rng: np.random.Generator, clip_id: str) -> Clip:
        seconds = float(rng.uniform(4.0, 8.0))
        for _ in range(5):
            if label == DRUMS:
                kit = int(rng.choice(SHIFT_KITS)) if split == "shift" else programs_for_split(DRUM_KITS, split, rng)
                notes = drum_phrase(seconds, rng)
                audio = self.renderer.render(notes, {DRUM_CHANNEL: (DRUM_BANK, kit)}, seconds + 0.5)
                variant = f"kit{kit}"
            else:
                instrument = INSTRUMENTS[label]
                program = (int(rng.choice(SHIFT_PROGRAMS[label])) if split == "shift"
                           else programs_for_split(instrument.programs, split, rng))
                notes = phrase(instrument, seconds, rng)
                channels = {0: (0, program)}
                if any(n.channel == 1 for n in notes):
                    channels[1] = (0, program)
                audio = self.renderer.render(notes, channels, seconds + 0.5,
                                             detune_cents=rng.normal(0, 8),
                                             modulation=int(rng.integers(0, 50)) if instrument.sustained else 0)
                variant = f"program{program}"
            audio = fit_length(audio, int(seconds * SAMPLE_RATE))
            if notes and active_fraction(audio) > 0.5:
                break
        audio = augment(fade(audio), rng)
        return Clip(audio, (f"fluidr3:{clip_id}:{variant}",), PACKAGE, LICENCE)

    def packages(self) -> list[SourcePackage]:
        return [SourcePackage(PACKAGE, soundfont_version(), LICENCE, "instrument renders (FluidR3_GM.sf2)")]
