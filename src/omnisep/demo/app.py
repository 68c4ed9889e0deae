"""The local web demo: a mixture and one or more queries in, target and residual out.

It runs offline: analytics are off before Gradio is imported, the theme uses
system fonts (Gradio's own would fetch web fonts), there is no share link and
the server binds to localhost unless the user names another host. Uploads and
results live under the omnisep cache folder and are deleted after an hour.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when Gradio is imported

import numpy as np

from omnisep.audio import load_audio, save_audio
from omnisep.errors import OmniSepError
from omnisep.modalities import BY_NAME, MODALITIES
from omnisep.pretrained import cache_dir

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_MAX_SECONDS = 600.0  # ten minutes: a CPU separates that in well under a minute
CACHE_MAX_AGE_SECONDS = 3600
SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
# The repository's bundled example mixtures (a source checkout); absent in a wheel, then no examples are shown.
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"
SYSTEM_MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")


def cache_folder() -> Path:
    """Uploads and results stay inside the documented cache folder."""
    return cache_dir() / "demo"


@dataclass
class DemoResult:
    target_path: Path
    residual_path: Path
    spectrogram_path: Path
    status: str


def _display_name(path: str | os.PathLike) -> str:
    """Gradio stores uploads under random folders; users know only the file name."""
    return Path(path).name


def _friendly(exc: OmniSepError, *paths: str | os.PathLike | None) -> str:
    message = str(exc)
    for path in paths:
        if path:
            message = message.replace(os.fspath(path), _display_name(path))
    return message


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _safe_stem(path: str | os.PathLike) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._") or "mixture"
    return stem[:60]


class DemoSession:
    """What one press of "Separate" does, without any web framework (so tests can call it)."""

    def __init__(self, separator, max_seconds: float = DEFAULT_MAX_SECONDS, work_dir: Path | None = None):
        self.separator = separator
        self.max_seconds = float(max_seconds)
        self.work_dir = Path(work_dir) if work_dir is not None else cache_folder() / "results"

    def _prune_old_results(self) -> None:
        """Gradio serves copies of the results, so ours are only needed briefly."""
        if not self.work_dir.is_dir():
            return
        cutoff = time.time() - CACHE_MAX_AGE_SECONDS
        for folder in self.work_dir.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def _load(self, path, role: str) -> tuple[np.ndarray, int]:
        try:
            audio, rate = load_audio(path)
        except OmniSepError as exc:
            raise OmniSepError(f"{role}: {_friendly(exc, path)}") from None
        seconds = audio.shape[-1] / rate
        if seconds > self.max_seconds:
            raise OmniSepError(
                f"{role}: '{_display_name(path)}' lasts {_duration(seconds)}, the demo takes at most "
                f"{_duration(self.max_seconds)}; use `omnisep separate` for long files."
            )
        return audio, rate

    def _load_clip(self, path, role: str) -> tuple[np.ndarray, int]:
        """An audio query as the (mono samples, rate) pair the encoders take."""
        audio, rate = self._load(path, role)
        return audio.mean(axis=0), rate

    def run(
        self,
        mixture: str | None,
        text: str = "",
        text_weight: float = 1.0,
        image: str | None = None,
        image_weight: float = 1.0,
        audio_query: str | None = None,
        audio_weight: float = 1.0,
        negative_text: str = "",
        negative_image: str | None = None,
        negative_audio: str | None = None,
        alpha: float | None = None,
        query_aug: bool = False,
        auto_negative: bool = False,
    ) -> DemoResult:
        if not mixture:
            raise OmniSepError("Upload or record a mixture first.")
        text = (text or "").strip()
        negative_text = (negative_text or "").strip()
        # (value, weight) per modality; the weights follow the order of the query's parts (MODALITIES).
        positive = {"text": (text, text_weight), "image": (image, image_weight), "audio": (audio_query, audio_weight)}
        negatives = {"text": negative_text, "image": negative_image, "audio": negative_audio}
        if not any(positive[m][0] for m in MODALITIES):
            raise OmniSepError("Give at least one query: a text, an image or an audio clip of the sound to keep.")
        weights = [positive[m][1] for m in MODALITIES if positive[m][0]]
        if not any(w > 0 for w in weights):
            raise OmniSepError("At least one query needs a weight above 0.")
        if auto_negative and (negative_text or negative_image or negative_audio):
            raise OmniSepError("The automatic negative query chooses what to remove itself: clear the negative text, image and audio, or untick it.")

        audio, rate = self._load(mixture, "Mixture")
        parts = {}
        for name in MODALITIES:
            value, negative = positive[name][0] or None, negatives[name] or None
            if name == "audio":  # uploaded clips are decoded here, so their length is checked like the mixture's
                value = self._load_clip(value, "Audio query") if value else None
                negative = self._load_clip(negative, "Negative audio") if negative else None
            parts[BY_NAME[name].api_keyword] = value
            parts[BY_NAME[name].negative_keyword] = negative

        started = time.perf_counter()
        try:
            result = self.separator.separate(
                audio, rate, weights=weights, alpha=None if auto_negative or alpha is None else float(alpha),
                query_aug=True if query_aug else None,  # unticked: the default (pictures and one text get it)
                negative="auto" if auto_negative else None, **parts
            )
        except OmniSepError as exc:
            raise OmniSepError(_friendly(exc, image, negative_image)) from None
        elapsed = time.perf_counter() - started

        self._prune_old_results()
        folder = self.work_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
        folder.mkdir(parents=True, exist_ok=True)
        stem = _safe_stem(mixture)
        target_path = folder / f"{stem}_target.wav"
        residual_path = folder / f"{stem}_residual.wav"
        # Float samples: the residual may exceed full scale, and nothing is lost.
        save_audio(target_path, result.target, result.sample_rate, subtype="FLOAT")
        save_audio(residual_path, result.residual, result.sample_rate, subtype="FLOAT")
        from omnisep.plotting.spectrograms import plot_separation, spectrogram

        spectrogram_path = plot_separation(
            folder / f"{stem}_spectrograms.png",
            [(name, spectrogram(wave, result.sample_rate))
             for name, wave in (("mixture", audio), ("target", result.target), ("residual", result.residual))],
        )
        status = (
            f"Separated **{result.query_label}** from '{_display_name(mixture)}' "
            f"({audio.shape[-1] / rate:.1f} s) in {elapsed:.1f} s."
        )
        if auto_negative:
            defaults = self.separator.negative_defaults
            # The scan reports each label's presence; the residual source, how much what is left resembles it;
            # both, the sum of the two.
            score = {"scan": "presence", "residual": "resemblance", "scan+residual": "evidence",
                     "residual-tagger": "probability", "scan*residual-tagger": "evidence"}[defaults["auto_source"]]
            chosen = ", ".join(f"'{c.label}' ({score} {c.presence:.2f})" for c in result.negatives or [])
            status += (f" The automatic negative query removed {chosen} "
                       f"({defaults['mode']} mode, alpha = {defaults['auto_alpha']:g})." if chosen
                       else " The automatic negative query found nothing else to remove.")
        elif negative_text or negative_image or negative_audio:
            mode, used = self.separator.negative_setting(result.query)
            status += f" Negative query: {mode} mode, strength alpha = {used:g}."
        if result.query_aug_score is not None:
            status += f" Query-Aug: '{result.query_label}' (score {result.query_aug_score:.2f})."
        return DemoResult(target_path, residual_path, spectrogram_path, status)


def scan_mixture(session: DemoSession, mixture) -> tuple[Path, str]:
    """The scan timeline of a mixture (what sounds when) and a one-line summary."""
    from omnisep.scan import scan
    from omnisep.segments import find_segments, found_labels, plot_timeline

    from omnisep.scan import DEFAULT_THRESHOLD
    from omnisep.states import scan_threshold

    audio, rate = session._load(mixture, "Mixture")
    result = scan(session.separator, audio, rate)
    config = getattr(session.separator, "config", None) or {}
    threshold = scan_threshold(config, getattr(session.separator, "path", "the model"), DEFAULT_THRESHOLD,
                               verified=result.similarity is not None)
    segments = find_segments(result, threshold)
    session._prune_old_results()
    folder = session.work_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-scan-{os.urandom(3).hex()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = plot_timeline(result, segments, folder / f"{_safe_stem(mixture)}_timeline.png", threshold,
                         title=f"{_display_name(mixture)}: what the model hears, and when")
    found = [f"{result.labels[i]} ({result.presence[i]:.2f})" for i in found_labels(result, threshold)][:5]
    summary = ("Scan: " + ", ".join(found)) if found else "Scan: no label of the model reaches the threshold."
    return path, summary


def example_rows(folder: Path = EXAMPLES_DIR) -> list[list]:
    """One-click inputs from examples/examples.json: [mixture, text, image, auto negative]."""
    import json

    index = folder / "examples.json"
    if not index.is_file():
        return []
    rows = []
    for entry in json.loads(index.read_text(encoding="utf-8")):
        mixture = folder / entry["file"]
        first, second = (source["label"] for source in entry["sources"][:2])
        image = entry.get("image_queries", {}).get(second)
        if not mixture.is_file():
            continue
        # One text query with the automatic negative, and one image query of the other source.
        rows.append([str(mixture), first, None, True])
        if image and (folder / image).is_file():
            rows.append([str(mixture), "", str(folder / image), False])
    return rows


def _theme():
    import gradio as gr

    return gr.themes.Base(font=list(SYSTEM_FONTS), font_mono=list(SYSTEM_MONO_FONTS))


def build_app(separator, model_name: str = "", max_seconds: float = DEFAULT_MAX_SECONDS, work_dir: Path | None = None,
              examples_dir: Path | None = EXAMPLES_DIR):
    """The Gradio Blocks page around a :class:`DemoSession`."""
    import gradio as gr

    session = DemoSession(separator, max_seconds=max_seconds, work_dir=work_dir)

    def on_separate(*values):
        try:
            result = session.run(*values)
        except OmniSepError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            # A bug, not the user's fault: full traceback in the terminal, one line in the page.
            log.exception("separation failed")
            raise gr.Error("Separation failed unexpectedly; the terminal running `omnisep demo` shows why.",
                           print_exception=False) from None
        return str(result.target_path), str(result.residual_path), str(result.spectrogram_path), result.status

    def on_mixture(mixture):
        if not mixture:
            return None, ""
        try:
            path, summary = scan_mixture(session, mixture)
        except OmniSepError as exc:
            return None, str(exc)
        except Exception:
            log.exception("scan failed")
            return None, "The scan failed unexpectedly; the terminal running `omnisep demo` shows why."
        return str(path), summary

    with gr.Blocks(title="omnisep demo", analytics_enabled=False, delete_cache=(CACHE_MAX_AGE_SECONDS, CACHE_MAX_AGE_SECONDS)) as app:
        gr.Markdown(
            "## omnisep: separate a sound by describing it\n"
            "Upload or record a mixture, describe the sound to keep with a text, an image or an audio clip "
            "(several at once are mixed by their weights), optionally say what to remove, and press **Separate**."
            + (f" Model: `{model_name}`." if model_name else "")
        )
        with gr.Tab("Separate a file", id="file-tab", elem_id="file-tab"):
            with gr.Row():
                with gr.Column():
                    mixture = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Mixture", elem_id="mixture")
                    with gr.Group():
                        text = gr.Textbox(label="Text query", placeholder="e.g. dog barking", elem_id="text-query")
                        text_weight = gr.Slider(0, 2, value=1, step=0.05, label="Text weight", elem_id="text-weight")
                    with gr.Accordion("Image and audio queries", open=False):
                        image = gr.Image(type="filepath", label="Image query", sources=["upload", "clipboard"], elem_id="image-query")
                        image_weight = gr.Slider(0, 2, value=1, step=0.05, label="Image weight")
                        audio_query = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio query", elem_id="audio-query")
                        audio_weight = gr.Slider(0, 2, value=1, step=0.05, label="Audio weight")
                    with gr.Accordion("Negative query (what to remove)", open=False):
                        negative_text = gr.Textbox(label="Negative text", placeholder="e.g. speech", elem_id="negative-text")
                        negative_image = gr.Image(type="filepath", label="Negative image", sources=["upload", "clipboard"])
                        negative_audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Negative audio")
                        alpha = gr.Slider(0, 4, value=separator.negative_defaults["alpha"], step=0.05,
                                          label=f"Alpha (strength of the negative query; {separator.negative_defaults['mode']} mode)",
                                          elem_id="alpha")
                    auto_negative = gr.Checkbox(label="Automatic negative query: find the strongest other sound and remove it",
                                                elem_id="auto-negative")
                    query_aug = gr.Checkbox(label="Query-Aug: match the query to the labels the model was trained on (the answer is shown)", elem_id="query-aug")
                    run = gr.Button("Separate", variant="primary", elem_id="separate-button")
                    rows = example_rows(examples_dir) if examples_dir is not None else []
                    if rows:
                        gr.Examples(rows, inputs=[mixture, text, image, auto_negative], label="Bundled examples (click one)",
                                    elem_id="examples", cache_examples=False)
                with gr.Column():
                    status = gr.Markdown("Results appear here.", elem_id="status")
                    target = gr.Audio(label="Target (the sound you asked for)", type="filepath", interactive=False,
                                      buttons=["download"], elem_id="target-audio")
                    residual = gr.Audio(label="Residual (everything else)", type="filepath", interactive=False,
                                        buttons=["download"], elem_id="residual-audio")
                    spectrograms = gr.Image(label="Spectrograms: mixture, target, residual", type="filepath",
                                            show_label=False, interactive=False, height=340, elem_id="spectrograms")
                    scan_status = gr.Markdown("", elem_id="scan-status")
                    timeline = gr.Image(label="Scan of the mixture: which labels sound when", type="filepath",
                                        interactive=False, elem_id="scan-timeline")
            run.click(
                on_separate,
                inputs=[mixture, text, text_weight, image, image_weight, audio_query, audio_weight,
                        negative_text, negative_image, negative_audio, alpha, query_aug, auto_negative],
                outputs=[target, residual, spectrograms, status],
                concurrency_limit=1,
            )
            mixture.change(on_mixture, inputs=[mixture], outputs=[timeline, scan_status], concurrency_limit=1)
        with gr.Tab("Live", id="live-tab", elem_id="live-tab"):
            build_live_tab(separator, work_dir)
    return app


def build_live_tab(separator, work_dir: Path | None = None) -> None:
    """The live page (inside a Blocks context): microphone in, separated sound out, query changeable while it runs.

    The logic lives in :mod:`omnisep.demo.live`; each tab's stream is kept in
    its own ``gr.State``, and the page plays the separated blocks itself.
    """
    import gradio as gr

    from omnisep.demo.live import (
        DEFAULT_LATENCY_LABEL,
        HEAR,
        LATENCIES,
        MAX_SECONDS,
        PLAYER_JS,
        START_JS,
        STREAM_EVERY,
        live_step,
        live_stop,
    )

    results = Path(work_dir) if work_dir is not None else cache_folder() / "results"
    gr.Markdown(
        "Press **Record**: the microphone is separated while you speak or play, and the sound you asked for "
        "plays back after the latency you choose (plus the browser's chunking). Change the query at any time: "
        "it takes effect within one hop. Use headphones, or the loudspeaker feeds the microphone. "
        f"A recording lasts at most {MAX_SECONDS // 60} minutes; when it stops, the whole target and residual "
        "can be downloaded."
    )
    with gr.Row():
        with gr.Column():
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="live-mic")
            text = gr.Textbox(label="Keep (text query)", placeholder="e.g. speech", elem_id="live-text")
            with gr.Accordion("Image query and negative text", open=False):
                image = gr.Image(type="filepath", label="Keep (image query)", sources=["upload", "clipboard"],
                                 elem_id="live-image")
                negative_text = gr.Textbox(label="Remove (negative text)", placeholder="e.g. music",
                                           elem_id="live-negative-text")
            latency = gr.Radio(list(LATENCIES), value=DEFAULT_LATENCY_LABEL, label="Latency (set before recording)",
                               elem_id="live-latency")
            hear = gr.Radio(list(HEAR), value=HEAR[0], label="Play back", elem_id="live-hear")
        with gr.Column():
            status = gr.Markdown("Press Record to start.", elem_id="live-status")
            gr.HTML("<p id='live-player'>Playback: nothing yet.</p>")
            target = gr.Audio(label="Target of the last recording", type="filepath", interactive=False,
                              buttons=["download"], elem_id="live-target")
            residual = gr.Audio(label="Residual of the last recording", type="filepath", interactive=False,
                                buttons=["download"], elem_id="live-residual")
    session = gr.State(None)
    payload = gr.Textbox(visible="hidden", elem_id="live-payload")

    def on_chunk(state, chunk, text_value, image_value, negative_value, latency_value, hear_value):
        state, samples, line = live_step(state, separator, chunk, text_value, image_value, negative_value,
                                         latency_value, hear_value)
        return state, samples if samples is not None else gr.skip(), line

    def on_stop(state, hear_value):
        folder = results / f"{time.strftime('%Y%m%d-%H%M%S')}-live-{os.urandom(3).hex()}"
        state, samples, line, target_path, residual_path = live_stop(state, folder, hear_value)
        return (state, samples if samples is not None else gr.skip(), line,
                str(target_path) if target_path else None, str(residual_path) if residual_path else None)

    # A new recording starts from a fresh session (a chunk that came after the last Stop opened a stray stream).
    mic.start_recording(lambda: None, inputs=None, outputs=[session], js=START_JS, show_progress="hidden")
    mic.stream(on_chunk, inputs=[session, mic, text, image, negative_text, latency, hear],
               outputs=[session, payload, status], stream_every=STREAM_EVERY, time_limit=MAX_SECONDS,
               concurrency_limit=None, show_progress="hidden")
    mic.stop_recording(on_stop, inputs=[session, hear], outputs=[session, payload, status, target, residual],
                       show_progress="hidden")
    payload.change(None, inputs=[payload], js=PLAYER_JS)


def check_port(host: str, port: int) -> None:
    """Fail in a second, before Gradio is even imported, when the address is taken."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise OmniSepError(f"cannot serve the demo on {host}:{port} ({exc.strerror or exc}); choose another --port.") from None


def launch(
    separator,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    model_name: str = "",
):
    """Start serving in a background thread and return the app (``block_thread()`` waits, ``close()`` stops)."""
    check_port(host, port)
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    # Gradio's own uploads go to the cache folder too, not to /tmp.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(folder / "uploads"))
    app = build_app(separator, model_name=model_name, max_seconds=max_seconds, work_dir=folder / "results")
    examples = [str(EXAMPLES_DIR)] if EXAMPLES_DIR.is_dir() else []
    try:
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            show_error=False,
            max_file_size=f"{int(max_upload_mb)}mb",
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            theme=_theme(),
            prevent_thread_lock=True,
            quiet=True,
            allowed_paths=[str(folder), *examples],
        )
    except OSError as exc:
        raise OmniSepError(f"cannot serve the demo on {host}:{port} ({exc}); choose another --port.") from None
    return app
