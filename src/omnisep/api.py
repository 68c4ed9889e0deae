"""The Python API: ``Separator(model).separate(audio, sample_rate, text=...)``.

A :class:`Separator` holds one checkpoint and the query encoder it was
trained with (refusing any other, since embeddings of another encoder would
silently mean something else). Queries are text, images (or the frames of a
video), audio clips, or a weighted mix of them, optionally with a negative
query and Query-Aug; several queries share one U-Net pass.

Example::

    from omnisep import Separator
    from omnisep.audio import load_audio

    separator = Separator()                      # the bundled model
    audio, rate = load_audio("street.wav")
    result = separator.separate(audio, rate, text="dog barking", negative_text="speech")
    result.target, result.residual               # [C, T] each; target + residual == audio
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnisep import apply, modalities, queries as query_math
from omnisep.audio import VIDEO_SUFFIXES, AudioReader, AudioWriter, channels_first, restore_layout
from omnisep.audio import downmix as downmix_channels
from omnisep.errors import OmniSepError, describe
from omnisep.states import NEGATIVE_DEFAULTS, contrast_strength, negative_defaults, second_look_gate  # noqa: F401  (NEGATIVE_DEFAULTS: API)

MediaItem = Any  # a path, or an array (image H x W x 3 uint8; audio mono float32, or (array, sample_rate))


def _as_items(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) and not _is_audio_pair(value):
        return list(value)
    return [value]


def _is_audio_pair(value) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, np.integer))


def _short_name(kind: str, item) -> str:
    """Texts as written, files by name, arrays by kind."""
    if modalities.BY_NAME[kind].given_as == "text":
        text = " ".join(str(item).split())
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return f"{kind} array"


@dataclass
class Query:
    """One query: text, images (or videos) and audio clips, weighted, with an optional negative.

    Each of ``text``/``image``/``audio`` is one item or a list. The parts are
    combined with paper eq. 1, ``sum w_i normalize(e_i)``, in the order texts,
    images, audios; ``weights`` (default: all equal) follow that order. Audio
    arrays come as ``(samples, sample_rate)``; a bare array is taken to be at
    the mixture's rate. A video given as an image is embedded from its frames
    at the centre second +- 1 s (OmniSep's training image query).
    """

    text: str | Sequence[str] | None = None
    image: MediaItem | Sequence[MediaItem] | None = None
    audio: MediaItem | Sequence[MediaItem] | None = None
    weights: Sequence[float] | None = None
    negative_text: str | Sequence[str] | None = None
    negative_image: MediaItem | Sequence[MediaItem] | None = None
    negative_audio: MediaItem | Sequence[MediaItem] | None = None
    alpha: float | None = None  # None: the model's own (see Separator.negative_defaults)
    negative_mode: str | None = None  # proportional, naive or logit; None: the model's own
    contrast: float | None = None  # query-contrast strength (omnisep.queries.contrast_terms); None: the model's own
    # Query-Aug (eq. 5): True / False; None: on for a query of pictures only or of one text, where the model ships the
    # matcher (the bundled encoder's Query-Aug v2: a class name stays itself, a description becomes its class).
    query_aug: bool | None = None
    # omnisep.negatives.AutoNegative: choose the negative from a scan of each mixture.
    auto_negative: Any = None

    def parts(self) -> list[tuple[str, Any]]:
        """``(modality, item)`` pairs in the order of ``omnisep.modalities.MODALITIES``."""
        return [(m.name, item) for m in modalities.ALL for item in _as_items(getattr(self, m.name))]

    def negative_parts(self) -> list[tuple[str, Any]]:
        return [(m.name, item) for m in modalities.ALL for item in _as_items(getattr(self, m.negative_keyword))]

    def describe(self) -> str:
        """A short human-readable label, e.g. ``dog barking + violin.png - speech``."""
        positive = " + ".join(_short_name(kind, item) for kind, item in self.parts())
        return f"{positive} {self.describe_negative()}".strip()

    def describe_negative(self) -> str:
        if self.auto_negative is not None:
            return "- auto"
        return " ".join(f"- {_short_name(kind, item)}" for kind, item in self.negative_parts())


@dataclass
class EmbeddedQuery:
    """A query turned into the vector the Separate-Net receives (see :meth:`Separator.prepare`)."""

    vector: torch.Tensor
    label: str
    query_aug_score: float | None
    query: Query
    negatives: list | None = None  # omnisep.negatives.NegativeChoice, once an automatic negative was chosen
    # Query-Aug v2's answer (label, probability, cosine, runner_up, runner_up_probability, known), when it ran.
    query_aug_match: dict | None = None
    # A negative query in the logit mode stays apart from ``vector``: the masks combine both.
    negative: torch.Tensor | None = None
    alpha: float = 0.0
    # The query contrast: the model's background query and its strength (0: none).
    background: torch.Tensor | None = None
    contrast: float = 0.0

    def terms(self) -> list[tuple[torch.Tensor, float]]:
        """The rows whose mask logits this query's mask sums, with their weights."""
        terms = ([(self.vector, 1.0)] if self.negative is None
                 else query_math.negative_terms(self.vector, self.negative, self.alpha, "logit"))
        return query_math.contrast_terms(terms, self.background, self.contrast)

    def rows(self) -> query_math.QueryRows:
        return query_rows([self])


def _once(make: Callable) -> Callable:
    """``make()`` run at most once, on the first call (a mixture's scan or tags, wanted by several steps or none)."""
    kept = []

    def get():
        if not kept:
            kept.append(make())
        return kept[0]

    return get


def _pictures_only(parts) -> bool:
    return bool(parts) and all(kind == "image" for kind, _ in parts)


def _one_text(parts) -> bool:
    """People query in their own words: one text is matched by default."""
    return len(parts) == 1 and parts[0][0] == "text"


def query_rows(embedded: Sequence[EmbeddedQuery], second_look: float | None = None) -> query_math.QueryRows:
    """What the network is asked for these queries (vectors, logit-mode negatives, the query contrast), with
    the model's second look (``Separator.second_look``; the live path has none)."""
    return query_math.QueryRows.from_terms([item.terms() for item in embedded], second_look)


@dataclass
class SeparationResult:
    """``target`` and ``residual`` have the input's layout and rate; ``target + residual`` is the input.

    ``query_label`` describes what was separated: the bank label Query-Aug
    chose, or the query's own description.
    """

    target: np.ndarray
    residual: np.ndarray
    sample_rate: int
    query_label: str
    query_aug_score: float | None = None
    query: Query | None = field(default=None, repr=False)
    negatives: list | None = None  # the labels an automatic negative query subtracted (NegativeChoice)


def _check_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OmniSepError("device 'cuda' was requested but PyTorch sees no CUDA GPU here; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise OmniSepError("device 'mps' was requested but Apple's Metal backend is not available here; use --device cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise OmniSepError(f"device {str(device)!r} is not supported; use cpu, cuda or mps.")
    return device


class Separator:
    """A loaded model plus its query encoder; reuse one instance for many files."""

    def __init__(self, model: str | os.PathLike = "default", encoder=None, device: str | torch.device = "cpu"):
        from omnisep.pretrained import resolve_model
        from omnisep.states import check_encoder, load_checkpoint

        self.device = _check_device(device)
        self.path = resolve_model(model)
        checkpoint = load_checkpoint(self.path, map_location=self.device)
        self.model = checkpoint.model.eval()
        if self.device.type == "cpu":
            # oneDNN convolutions run the U-Net about 1.4x faster on channels-last tensors (docs/performance-scale.md).
            self.model.to(memory_format=torch.channels_last)
        self.config = checkpoint.config
        self.bank = checkpoint.bank
        self.negative_defaults = negative_defaults(self.config, self.path)
        self.contrast = contrast_strength(self.config, self.path)
        # An output under this share of the mixture's energy (dB) is separated again from itself
        # (signal_path.look_again); None: never. The model's own, chosen on validation; set it to None to skip.
        self.second_look = second_look_gate(self.config, self.path)
        self.background = query_math.background_query(self.bank.embeddings) if self.bank is not None else None
        self._bank_rows = {" ".join(label.split()): row for row, label in enumerate(self.bank.labels)} if self.bank else {}
        if encoder is None:
            from omnisep.encoders import recorded_encoder

            encoder = recorded_encoder(self.config["encoder"])
        check_encoder(self.config, encoder.identity())
        self.encoder = encoder

    def __repr__(self) -> str:
        return f"Separator(model={str(self.path)!r}, encoder={self.encoder.name!r}, device={str(self.device)!r})"

    # -- queries -----------------------------------------------------------------------------

    def _text_vector(self, text) -> torch.Tensor:
        """A text that names a bank label takes the bank's row, so the text model need not load.

        Training fills the bank with this same encoder's embeddings of the label
        texts (``check_encoder`` vouched for the encoder), so the vector is the
        one ``embed_text`` would give, up to float rounding; a cold
        ``omnisep separate --text LABEL`` then skips loading MiniLM (seconds).
        """
        row = self._bank_rows.get(" ".join(text.split())) if isinstance(text, str) else None
        if row is not None:
            return self.bank.embeddings[row].clone()
        return self.encoder.embed("text", [text])[0]

    def _embed_parts(self, parts: list[tuple[str, Any]], mixture_rate: int | None) -> list[torch.Tensor]:
        return [self._part_vector(kind, item, mixture_rate) for kind, item in parts]

    def _part_vector(self, kind: str, item, mixture_rate: int | None, encoder=None) -> torch.Tensor:
        """One query part's vector; the special cases of each modality's input are resolved here.

        ``encoder``: another encoder for pictures (picture Query-Aug recognises with the picture recogniser)."""
        from omnisep.images import centre_frames, video_frames

        if kind == "text":
            return self._text_vector(item)
        if kind == "image" and isinstance(item, (str, os.PathLike)) and Path(item).suffix.lower() in VIDEO_SUFFIXES:
            frames = centre_frames(video_frames(item, fps=1.0))
            return query_math.normalize((encoder or self.encoder).embed("image", frames).mean(dim=0))
        # A user's audio example is made ready for the encoder first (trimmed, a short one looped).
        if kind == "audio" and _is_audio_pair(item):
            return self.encoder.embed_examples([item[0]], sample_rate=int(item[1]))[0]
        if kind == "audio" and not isinstance(item, (str, os.PathLike)):
            return self.encoder.embed_examples([item], sample_rate=mixture_rate)[0]
        if kind == "audio":
            return self.encoder.embed_examples([item])[0]
        return (encoder or self.encoder).embed(kind, [item])[0]

    def embed_query(self, query: Query | None = None, mixture_rate: int | None = None, **fields) -> torch.Tensor:
        """The vector the Separate-Net receives for a query: eq. 1, then Query-Aug (eq. 5), then eq. 4.

        A negative query in the logit mode is not part of a vector: use :meth:`prepare` for it.
        """
        embedded = self.prepare([query or Query(**fields)], mixture_rate)[0]
        if embedded.negative is not None:
            raise OmniSepError("a negative query in the logit mode is not one vector; use Separator.prepare.")
        return embedded.vector

    def prepare(self, queries: Sequence[Query | EmbeddedQuery], mixture_rate: int | None = None,
                presence=None) -> list[EmbeddedQuery]:
        """Embed queries once, to reuse them over many files (already embedded ones pass through).

        ``mixture_rate`` is the rate of bare audio-array query parts. ``presence`` (``{label: presence}``
        of the mixture to separate, as :func:`omnisep.scan.mixture_tags` gives; a
        :class:`~omnisep.scan.ScanResult` is read as its labels' presence) lets Query-Aug weigh an unsure
        picture's or description's classes by what the mixture holds; without it a query is matched alone (the
        separating methods hear the mixture themselves, :meth:`weigh_by_mixture`).
        """
        if not queries:
            raise OmniSepError("at least one query is needed.")
        if presence is not None and hasattr(presence, "presence"):
            presence = dict(zip(presence.labels, (float(p) for p in presence.presence)))
        prepared = []
        for query in queries:
            if isinstance(query, EmbeddedQuery):
                prepared.append(query)
            else:
                prepared.append(self._embed(query, mixture_rate, presence))
        return prepared

    def weigh_by_mixture(self, embedded: Sequence[EmbeddedQuery], mixture_rate: int | None,
                         tag_mixture: Callable[[], dict]) -> list[EmbeddedQuery]:
        """Unsure Query-Aug answers (pictures, and descriptions with Query-Aug on) matched again with what the mixture
        holds (the matchers' ``mixture_evidence``).

        ``tag_mixture()`` gives the sound tagger's ``{label: probability}`` anywhere in the mixture
        (:func:`omnisep.scan.mixture_tags`, one tagger pass); it is asked only when an answer is unsure
        (``Match.contenders``: labels whose presence could still change it), so a settled one costs nothing."""
        if not any((item.query_aug_match or {}).get("contenders") for item in embedded):
            return list(embedded)
        presence = tag_mixture()
        return [self.prepare([item.query], mixture_rate, presence)[0] if (item.query_aug_match or {}).get("contenders") else item
                for item in embedded]

    def mixture_tagger(self):
        """The :class:`omnisep.scan.Verification` whose tagger hears a whole mixture for Query-Aug's evidence (the
        one that hears what a query leaves)."""
        return self._residual_tagger()

    def _is_class_name(self, text: str) -> bool:
        """A class name is already its class's row: Query-Aug would only blend in a runner-up of p < 0.01."""
        return self.bank is not None and " ".join(str(text).lower().split()) in self.bank.labels

    def _query_aug_matcher(self):
        """Query-Aug v2 (omnisep.query_aug) for the bundled encoder when its bank covers the model's labels."""
        if not hasattr(self, "_matcher"):
            self._matcher = None
            if self.bank is not None and self.config["encoder"]["name"] == "bundled":
                from omnisep.query_aug import DEFAULT_BANK, ClassMatcher

                if DEFAULT_BANK.is_file():
                    matcher = ClassMatcher.load(DEFAULT_BANK)
                    if set(self.bank.labels) <= set(matcher.labels):
                        self._matcher = matcher
        return self._matcher

    def _residual_tagger(self):
        """A :class:`omnisep.scan.Verification` whose sound tagger hears what a query leaves: the model's
        recorded scan verification when it has a tagger, else the shipped tagger on its own (refused when
        it does not know the bank's labels)."""
        if not hasattr(self, "_tagging"):
            from omnisep.queries import normalize
            from omnisep.scan import Verification, verification_for
            from omnisep.tagger import load_tagger

            recorded = verification_for(self)
            if recorded is not None and recorded.tagger is not None:
                self._tagging = recorded
            else:
                rows = normalize(torch.as_tensor(self.bank.embeddings, dtype=torch.float32))
                self._tagging = Verification(None, rows, listen=False, tagger=load_tagger(), labels=list(self.bank.labels))
        return self._tagging

    def _picture_query_aug(self):
        """``(picture recogniser, picture matcher)`` for Query-Aug of picture queries, or None.

        Snapping replaces the picture's vector with the label's row, so the picture is recognised with the
        best recogniser shipped (:mod:`omnisep.encoders.recogniser`; before it, the image head v2) whichever
        heads embed the model's queries."""
        if not hasattr(self, "_pictures"):
            self._pictures = None
            if self._query_aug_matcher() is not None and hasattr(self.encoder, "with_heads"):
                from omnisep.query_aug import DEFAULT_PICTURES, ClassMatcher, picture_recogniser

                if DEFAULT_PICTURES.is_file():
                    self._pictures = (picture_recogniser(self.encoder), ClassMatcher.for_pictures())
        return self._pictures

    def _query_aug(self, vector: torch.Tensor, description: str, parts=(), weights=(), mixture_rate=None, presence=None):
        """Eq. 5. With Query-Aug v2 every entry of a class counts, the score is a calibrated probability, and a
        query that matches nothing known says so in its label. The query becomes what the matcher gives
        (:data:`omnisep.query_aug.GIVE`): one label's row, the first two blended by probability, or itself.

        A query of pictures only is matched by the picture matcher on the picture recogniser's view of the pictures.
        Either matcher weighs the query's first classes by ``presence`` (``{label: presence}``, what the mixture holds)
        when given and when it records a power."""
        matcher = self._query_aug_matcher()
        if matcher is None:
            vector, label, scores = self.bank.retrieve(vector)
            return vector, label, float(scores), None
        pictures = self._picture_query_aug() if _pictures_only(parts) else None
        probe, kind = vector, "text"
        if pictures is not None:
            encoder, matcher = pictures
            probe, kind = query_math.compose([self._part_vector(k, item, mixture_rate, encoder) for k, item in parts], weights), "pictures"
        # A query of one text is matched on its words too (omnisep.lexical); other queries on their vector only.
        words = [parts[0][1]] if kind == "text" and _one_text(parts) else None
        match = matcher.match(probe[None], words, presence)[0]
        found = {**match.to_dict(), "matcher": kind}
        given = match.given_vector(self.bank.labels, self.bank.embeddings)
        if given is None:
            return vector, f"{description} (Query-Aug: {match.describe()})", match.probability, found
        if not match.known:
            label = f"{description} (Query-Aug: {match.describe()})"
        elif match.given_text() != match.label:
            label = f"{match.label} (Query-Aug: {match.given_text()})"
        else:
            label = match.label
        return given.to(vector.dtype), label, match.probability, found

    def _embed(self, query: Query, mixture_rate: int | None, presence: dict | None = None) -> EmbeddedQuery:
        parts = query.parts()
        if not parts:
            raise OmniSepError(f"a query needs at least one {', '.join(modalities.MODALITIES[:-1])} or {modalities.MODALITIES[-1]} part.")
        weights = list(query.weights) if query.weights is not None else [1.0] * len(parts)
        vector = query_math.compose(self._embed_parts(parts, mixture_rate), weights)
        if query.auto_negative is not None and query.negative_parts():
            raise OmniSepError("give either an automatic negative query or negative texts, images or audio, not both.")
        label, score, match = query.describe(), None, None  # Query-Aug replaces the positive part of the label
        query_aug = query.query_aug
        if query_aug is None:  # the default: on for a query of pictures only or of one text, where its matcher is shipped
            query_aug = ((_pictures_only(parts) and self._picture_query_aug() is not None)
                         or (_one_text(parts) and not self._is_class_name(parts[0][1]) and self._query_aug_matcher() is not None))
        if query_aug:
            if self.bank is None:
                raise OmniSepError(f"model {describe(self.path)} has no query bank, so Query-Aug is not available.")
            vector, label, score, match = self._query_aug(vector, label, parts, weights, mixture_rate, presence)
        negatives = query.negative_parts()
        mode, alpha = self.negative_setting(query)
        if not negatives and query.auto_negative is None and (query.alpha is not None or query.negative_mode is not None):
            import warnings

            warnings.warn(
                f"alpha {alpha:g} / the {mode} mode only act on a negative query, and "
                f"'{query.describe()}' has none; add a negative text, image or audio.",
                stacklevel=4,
            )
        negative_vector = None
        if negatives:
            negative_vector = query_math.compose(self._embed_parts(negatives, mixture_rate), [1.0] * len(negatives))
            if mode != "logit":
                vector, negative_vector = query_math.negative(vector, negative_vector, alpha=alpha, mode=mode), None
            if query_aug:
                label += " " + query.describe_negative()
        strength = self._contrast(query)
        if negatives or query.auto_negative is not None:
            strength = 0.0  # a negative query already says what to keep apart (it beats the contrast on validation)
        if strength > 0 and self.background is None:
            raise OmniSepError(f"model {describe(self.path)} has no query bank, so it has no background query to contrast with.")
        return EmbeddedQuery(vector, label, score, query, query_aug_match=match, negative=negative_vector,
                             alpha=alpha if negative_vector is not None else 0.0,
                             background=self.background if strength > 0 else None, contrast=strength)

    def _contrast(self, query: Query) -> float:
        """The query contrast a query gets without a negative: its own strength, else the model's."""
        return self.contrast if query.contrast is None else query_math.check_alpha(query.contrast)

    def negative_setting(self, query: Query) -> tuple[str, float]:
        """The query's negative mode and alpha, the model's defaults where it gives none."""
        mode = self.negative_defaults["mode"] if query.negative_mode is None else query_math.check_negative_mode(query.negative_mode)
        alpha = self.negative_defaults["alpha"] if query.alpha is None else query_math.check_alpha(query.alpha)
        return mode, alpha

    # -- separation --------------------------------------------------------------------------

    def separate(
        self,
        audio,
        sample_rate: int,
        text=None,
        image=None,
        audio_query=None,
        weights=None,
        negative_text=None,
        negative_image=None,
        negative_audio=None,
        alpha: float | None = None,
        negative_mode: str | None = None,
        query_aug: bool | None = None,
        downmix: bool = False,
        negative=None,
        contrast: float | None = None,
        **options,
    ) -> SeparationResult:
        """Separate what one query describes; ``options`` go to :meth:`separate_many` (chunking).

        ``negative="auto"`` (or an :class:`omnisep.negatives.AutoNegative`)
        chooses the negative query from a scan of ``audio``; the result's
        ``negatives`` lists the labels subtracted.
        """
        from omnisep.negatives import AutoNegative

        query = Query(
            text=text,
            image=image,
            audio=audio_query,  # `audio` is the mixture here (see modalities.AUDIO.api_keyword)
            weights=weights,
            negative_text=negative_text,
            negative_image=negative_image,
            negative_audio=negative_audio,
            alpha=alpha,
            negative_mode=negative_mode,
            contrast=contrast,
            query_aug=query_aug,
            auto_negative=AutoNegative.coerce(negative),
        )
        return self.separate_many(audio, sample_rate, [query], downmix=downmix, **options)[0]

    def separate_many(
        self,
        audio,
        sample_rate: int,
        queries: Sequence[Query | EmbeddedQuery],
        downmix: bool = False,
        chunk_seconds: float = apply.DEFAULT_CHUNK_SECONDS,
        overlap: float = apply.DEFAULT_OVERLAP_SECONDS,
        batch_size: int = apply.DEFAULT_BATCH_SIZE,
    ) -> list[SeparationResult]:
        """Several queries, one U-Net pass; results in the audio's layout.

        Audio is ``[C, T]`` or ``[T]``; ``[T, C]`` with at most 8 channels (what
        ``soundfile.read`` returns) is recognised as such. Integer arrays are
        scaled by their type's range (int16 / 32768), float arrays taken as they are.
        """
        mixture, layout = _check_mixture(audio, sample_rate)
        if downmix:
            mixture = downmix_channels(mixture)
        from omnisep.scan import mixture_tags, scan

        embedded = self.prepare(queries, sample_rate)
        embedded = self.weigh_by_mixture(embedded, sample_rate,
                                       _once(lambda: mixture_tags(self.mixture_tagger(), mixture, sample_rate)))
        scan_mixture = _once(lambda: scan(self, mixture, sample_rate))
        if any(item.query.auto_negative is not None for item in embedded):
            def hear_residuals(items, sink):
                plain = apply.separate_array(self.model, mixture, sample_rate, query_rows(items, self.second_look), chunk_seconds,
                                             overlap, batch_size)
                return [sink(sample_rate).hear(mixture, target) for target in plain]

            embedded = self.choose_negatives(embedded, scan_mixture, hear_residuals)
        targets = apply.separate_array(self.model, mixture, sample_rate, query_rows(embedded, self.second_look), chunk_seconds,
                                       overlap, batch_size)
        results = []
        for item, target in zip(embedded, targets):
            residual = mixture - target
            target, residual = restore_layout(target, layout), restore_layout(residual, layout)
            results.append(
                SeparationResult(target, residual, int(sample_rate), item.label, item.query_aug_score, item.query, item.negatives)
            )
        return results

    def choose_negatives(self, embedded: Sequence[EmbeddedQuery], scan_mixture: Callable,
                         hear_residuals: Callable | None = None) -> list[EmbeddedQuery]:
        """Queries with an automatic negative get it from the scan ``scan_mixture()`` (run once, if needed),
        with ``source="residual"`` from ``hear_residuals(items, sink)``: what each of those queries alone
        leaves, heard by the sinks ``sink(rate)`` makes (one pass for all of them; None where nothing audible
        is left), here the query encoder's embedding; with ``source="scan+residual"`` from both; with
        ``"residual-tagger"`` from the sound tagger's probabilities of what the query leaves, and with
        ``"scan*residual-tagger"`` from those times the scan's presence."""
        from omnisep import negatives

        if self.bank is None:
            raise OmniSepError(f"model {describe(self.path)} has no query bank, so it cannot choose negative queries.")
        settings = []
        for item in embedded:
            setting = item.query.auto_negative
            if setting is None or item.negatives is not None:
                settings.append(None)
                continue
            settings.append(dataclasses.replace(
                setting,
                count=self.negative_defaults["auto_count"] if setting.count is None else setting.count,
                source=self.negative_defaults["auto_source"] if setting.source is None else setting.source,
            ))

        def plain(item: EmbeddedQuery) -> EmbeddedQuery:
            """The query as it is without a negative: with the query contrast (the evaluation's plain query)."""
            strength = self._contrast(item.query)
            return dataclasses.replace(item, background=self.background if strength > 0 else None, contrast=strength)

        def heard(sources, sink) -> dict:
            """What the queries whose source is one of ``sources`` leave, heard by ``sink``, by index."""
            chosen = [index for index, setting in enumerate(settings) if setting is not None and setting.source in sources]
            if chosen and hear_residuals is None:
                raise ValueError("an automatic negative from the residual needs hear_residuals")
            return dict(zip(chosen, hear_residuals([plain(embedded[index]) for index in chosen], sink))) if chosen else {}

        evidence = heard(("residual", "scan+residual"), lambda rate: negatives.ResidualEvidence(self.encoder, rate))
        tags = heard(negatives.TAGGER_SOURCES, lambda rate: negatives.ResidualTags(self._residual_tagger(), rate))
        scanned = None
        out = []
        for index, (item, setting) in enumerate(zip(embedded, settings)):
            if setting is None:
                out.append(item)
                continue
            if setting.source == "residual":
                heard = evidence[index]
                choices = [] if heard is None else negatives.choose_by_embedding(heard, item.vector, self.bank, setting)
            elif setting.source == "scan+residual":
                scanned = scanned or scan_mixture()
                choices = negatives.choose_combined(scanned, evidence[index], item.vector, self.bank, setting)
            elif setting.source == "residual-tagger":
                choices = negatives.choose_by_tags(tags[index], item.vector, self.bank, setting)
            elif setting.source == "scan*residual-tagger":
                scanned = scanned or scan_mixture()
                choices = negatives.choose_by_tags(tags[index], item.vector, self.bank, setting, presence=scanned)
            else:
                scanned = scanned or scan_mixture()
                choices = negatives.choose(scanned, item.vector, self.bank, setting)
            mode, _ = self.negative_setting(item.query)
            alpha = next(a for a in (setting.alpha, item.query.alpha, self.negative_defaults["auto_alpha"]) if a is not None)
            vector, negative_vector = item.vector, None
            if choices and mode == "logit":
                negative_vector = negatives.negative_vector(self.bank, choices).to(vector.dtype)
            else:
                vector = negatives.apply(item.vector, self.bank, choices, alpha, mode)
            label = item.label.removesuffix(" - auto")
            # Nothing found to subtract: the query gets the contrast a query without a negative gets.
            base = plain(item) if not choices else dataclasses.replace(item, background=None, contrast=0.0)
            out.append(
                dataclasses.replace(
                    base, vector=vector, label=f"{label} {negatives.describe(choices)}", negatives=choices,
                    negative=negative_vector, alpha=alpha if negative_vector is not None else 0.0,
                )
            )
        return out

    def stream(
        self,
        query: Query | EmbeddedQuery | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        latency: float = 0.25,
        hop: float | None = None,
        context: float = 1.0,
        align: bool = False,
        **fields,
    ):
        """A live filter (:class:`omnisep.live.LiveStream`) for one query (a :class:`Query` or its fields).

        ``stream.push(block)`` returns ``(target, residual)`` delayed by
        exactly ``stream.latency`` seconds; ``stream.finish()`` returns the
        rest; ``stream.set_query(...)`` changes the query while it runs.
        Query fields are those of :class:`Query` (``text``, ``image``,
        ``audio``, ``negative_text`` ...).
        """
        from omnisep.live import LiveStream

        def embed(new_query, new_fields) -> EmbeddedQuery:
            return self.prepare([new_query if new_query is not None else Query(**new_fields)], sample_rate)[0]

        embedded = embed(query, fields)
        return LiveStream(
            self.model, embedded.rows(), sample_rate, channels, latency, hop, context, align, embedded.label, embed
        )

    def separate_file(
        self,
        path: str | os.PathLike,
        queries: Sequence[Query | EmbeddedQuery],
        targets: Sequence[str | os.PathLike],
        residuals: Sequence[str | os.PathLike] | None = None,
        subtype: str = "PCM_16",
        overwrite: bool = False,
        downmix: bool = False,
        chunk_seconds: float = apply.DEFAULT_CHUNK_SECONDS,
        overlap: float = apply.DEFAULT_OVERLAP_SECONDS,
        batch_size: int = apply.DEFAULT_BATCH_SIZE,
        on_input: Callable[[int], None] | None = None,
    ) -> list[dict]:
        """Stream a file of any length through the model into .wav/.flac files, with flat memory.

        The result equals :meth:`separate_many` on the loaded file. Outputs
        appear only once complete (:mod:`omnisep.fileio`); an output list
        that names the input itself, or one file twice, is refused before any
        work. Returns one dict per query: label, Query-Aug score, output paths
        and peaks.
        """
        if len(targets) != len(queries) or (residuals is not None and len(residuals) != len(queries)):
            raise ValueError("one target path (and one residual path) per query is needed")
        check_outputs(path, list(targets) + list(residuals or []))
        reader = AudioReader(path)
        writers: list[AudioWriter] = []
        try:
            channels = 1 if downmix else reader.channels
            from omnisep.scan import mixture_tags_file, scan_file

            # A first streamed pass over the file (flat memory, like the separation), when an unsure picture
            # or an automatic negative needs to know what the recording holds.
            embedded = self.prepare(queries, reader.sample_rate)
            embedded = self.weigh_by_mixture(embedded, reader.sample_rate,
                                           _once(lambda: mixture_tags_file(self.mixture_tagger(), path)))
            scan_mixture = _once(lambda: scan_file(self, path))
            if any(item.query.auto_negative is not None for item in embedded):

                def hear_residuals(items, sink):
                    # A first streamed pass over the file, as the separation (flat memory): the residuals go
                    # to the ear (encoder or tagger) window by window, the targets only to an energy meter.
                    sinks = [sink(reader.sample_rate) for _ in items]
                    first = AudioReader(path)
                    try:
                        blocks = (downmix_channels(block) for block in first) if downmix else iter(first)
                        apply.separate_stream(self.model, blocks, first.sample_rate, channels,
                                              query_rows(items, self.second_look),
                                              [sink.target for sink in sinks], sinks, chunk_seconds, overlap, batch_size)
                    finally:
                        first.close()
                    return [ear.result() for ear in sinks]

                embedded = self.choose_negatives(embedded, scan_mixture, hear_residuals)
            vectors = query_rows(embedded, self.second_look)
            # Opening the writers refuses existing outputs before any work is done.
            for output in list(targets) + list(residuals or []):
                writers.append(AudioWriter(output, reader.sample_rate, channels, subtype=subtype, overwrite=overwrite))
            blocks = (downmix_channels(block) for block in reader) if downmix else iter(reader)
            apply.separate_stream(
                self.model,
                blocks,
                reader.sample_rate,
                channels,
                vectors,
                writers[: len(queries)],
                writers[len(queries) :] or None,
                chunk_seconds,
                overlap,
                batch_size,
                on_input,
            )
            # Closing moves each file into place; still inside the try, so a
            # failure here drops the partial files of the writers not yet closed.
            peaks = [writer.close() for writer in writers]
        except BaseException:
            reader.close()
            for writer in writers:
                writer.abort()
            raise
        rows = []
        for index, item in enumerate(embedded):
            row = {
                "query": item.label,
                "query_aug_score": item.query_aug_score,
                **({"query_aug_match": item.query_aug_match} if item.query_aug_match is not None else {}),
                **({"negatives": [choice.to_dict() for choice in item.negatives]} if item.negatives is not None else {}),
                "target": str(targets[index]),
                "target_peak": peaks[index],
            }
            if residuals is not None:
                row["residual"] = str(residuals[index])
                row["residual_peak"] = peaks[len(queries) + index]
            rows.append(row)
        return rows


def check_outputs(source: str | os.PathLike, outputs: Sequence[str | os.PathLike]) -> None:
    """Refuse output lists that would overwrite the input or write one file twice (before any work)."""
    source = Path(source)
    seen: dict[str, Path] = {}
    for output in map(Path, outputs):
        key = os.path.normcase(os.path.realpath(output))
        if key in seen:
            raise OmniSepError(
                f"{describe(output)} is named for two outputs (a target and a residual, or two queries); "
                "each output needs its own file."
            )
        seen[key] = output
        same = key == os.path.normcase(os.path.realpath(source))
        if not same and output.exists():
            try:
                same = os.path.samefile(source, output)
            except OSError:
                same = False
        if same:
            raise OmniSepError(
                f"the input {describe(source)} is also one of its own outputs ({describe(output)}); separating it "
                "would overwrite the input, so choose another output folder."
            )


def _check_mixture(audio, sample_rate) -> tuple[np.ndarray, str]:
    """The mixture as float32 ``[C, T]`` and its layout (see :func:`omnisep.audio.channels_first`)."""
    mixture, layout = channels_first(audio, "the audio")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise OmniSepError(f"the sample rate must be a positive integer, got {sample_rate!r}.")
    if mixture.shape[-1] == 0:
        raise OmniSepError("the audio contains no samples (zero length).")
    if not np.isfinite(mixture).all():
        raise OmniSepError("the audio contains NaN or infinite sample values.")
    return mixture, layout
