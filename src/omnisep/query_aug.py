"""Query-Aug v2 at run time: the shipped text bank, matched over all of a class's entries, with a calibrated answer.

The bank is built by :mod:`omnisep.querynet.words` (build time, WordNet and
descriptions) and shipped as ``pretrained/query-aug/bank.safetensors`` +
``.json``. A query is scored against a class by a soft maximum over that
class's entries, ``s_c = tau_e * logsumexp(cos(q, e) / tau_e)``, plus, for a
query of words, a weight times their BM25 score against those entries
(:mod:`omnisep.lexical`, with a calibration of its own); the class
probabilities are ``softmax(s / T)``. Under the fitted probability or cosine
floor the answer is *unknown*, and the answer says so. A matcher that
records ``mixture_evidence`` weighs the classes by what the mixture holds
(the sound tagger's probabilities over it, :func:`omnisep.scan.mixture_tags`;
among its first ``mixture_evidence_top`` classes when it records that), when
the caller has them (``Match.contenders`` says whether they could change the
answer).

What the Separate-Net is given (``give`` in the bank's ``.json`` and in the
picture calibration; :data:`GIVE`): ``"snap-known"``, paper eq. 5's snap for a
known answer and the query as it is for an unknown one (what a file without
the key gets); ``"snap"``, the first class's row either way; ``"blend-2"``,
the first two classes' rows weighed by their probabilities (renormalised),
either way. The Separate-Net was trained with Query-Mixup, so a blend
separates each candidate in proportion to the belief in it. Chosen on
validation (``scripts/val_soft_snap.py``, docs/encoders.md): words blend
(+0.49 dB over ``snap-known``, +0.17 over ``snap``), pictures snap (the
blend of a picture's first two classes gained less than snapping on three of
five held-out styles). The answer's label says what was given.

Pictures have a matcher of their own (:meth:`ClassMatcher.for_pictures`): the
label entries only, since the image heads are trained onto the labels, with a
calibration fitted on pictures of styles each head never saw
(``pretrained/query-aug/pictures.json``, written by
:mod:`omnisep.querynet.image_head`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from omnisep.errors import OmniSepError, describe

DEFAULT_BANK = Path(__file__).resolve().parent / "pretrained" / "query-aug" / "bank.safetensors"
DEFAULT_PICTURES = DEFAULT_BANK.with_name("pictures.json")
PICTURES_FORMAT = "omnisep-query-aug-pictures"
GIVE = ("snap-known", "snap", "blend-2")  # what the Separate-Net is given for an answer (module docstring)
EVIDENCE_FLOOR = 0.05  # a class the scan does not hear keeps this much of its probability's weight (ClassMatcher.match)


def _checked_give(give: str) -> str:
    if give not in GIVE:  # callers that read a file name it (ClassMatcher.load, ClassMatcher.for_pictures)
        raise ValueError(f"Query-Aug gives one of {', '.join(GIVE)}, not {give!r}.")
    return give


@dataclass
class Match:
    """What Query-Aug understood: the class, its calibrated probability, and the runner-up."""

    label: str
    probability: float
    cosine: float
    runner_up: str
    runner_up_probability: float
    known: bool
    given: tuple = ()  # ((label, weight), ...): the rows the Separate-Net is given; empty: the query as it is
    evidence: float | None = None  # the power the mixture's evidence weighed the classes with (None: not weighed)
    # Matched without the mixture by a matcher that weighs by it: the labels whose presence could still make them
    # first (empty: none could, or nothing to weigh); hear the mixture, then match again with their presence.
    contenders: tuple = ()
    # Unknown although probable: the query is further from every entry than the calibration's cosine floor (words
    # alone made the class probable: "the pooch yapping" shares "pooch" with the dog and little else)
    far: bool = False

    def describe(self) -> str:
        head = self.label if self.known else f"unknown (closest: {self.label}{', far from its entries' if self.far else ''})"
        text = f"{head} p={self.probability:.2f}, runner-up {self.runner_up} p={self.runner_up_probability:.2f}"
        if self.evidence is not None:
            text += ", weighed by what the mixture holds"
        if not self.given:
            return text + ("" if self.known else "; left as it is")
        if self.known and self.given_text() == self.label:
            return text
        return f"{text}; separated as {self.given_text()}"

    def given_text(self) -> str:
        """``0.70 cello + 0.30 violin``, or ``cello`` where the others weigh under half a percent."""
        shown = [(label, weight) for label, weight in self.given if weight >= 0.005] or list(self.given[:1])
        if len(shown) == 1:
            return shown[0][0]
        return " + ".join(f"{weight:.2f} {label}" for label, weight in shown)

    def given_vector(self, labels, rows) -> torch.Tensor | None:
        """The query the Separate-Net is given, from ``rows`` (one per label in ``labels``: a model's bank or the
        label anchors): the one label's row as it is, or the labels' rows blended by weight (eq. 1, Query-Mixup).
        None where nothing is given or a given label has no row (the query stays as it is)."""
        from omnisep.queries import compose

        index = {label: i for i, label in enumerate(labels)}
        if not self.given or any(label not in index for label, _ in self.given):
            return None
        chosen = [torch.as_tensor(rows[index[label]]) for label, _ in self.given]
        return chosen[0].clone() if len(chosen) == 1 else compose(chosen, [weight for _, weight in self.given])

    def to_dict(self) -> dict:
        return asdict(self)


class ClassMatcher:
    """Scores a query against every class over all its entries; calibrated, with an unknown answer."""

    def __init__(self, labels, entry_labels, embeddings, texts=None, kinds=None, entry_temperature=0.05,
                 temperature=1.0, min_probability=0.0, min_cosine=-1.0, give="snap-known", lexical=None, words=None):
        self.labels = list(labels)
        index = {label: i for i, label in enumerate(self.labels)}
        self.entry_class = torch.tensor([index[label] for label in entry_labels])
        self.embeddings = F.normalize(torch.as_tensor(embeddings).float(), dim=-1)
        self.texts, self.kinds = texts, kinds
        self.entry_temperature = float(entry_temperature)
        self.temperature = float(temperature)
        self.min_probability = float(min_probability)
        self.min_cosine = float(min_cosine)
        self.give = _checked_give(give)
        # {"weight", "temperature", "min_probability", "min_cosine"[, "mention"]}: words count too, with a calibration of
        # their own (the one above stays for queries that come without words: audio, pictures, compositions); "mention":
        # what naming one of a class's words-only phrases adds to its score (lexical.MentionIndex)
        self.lexical = dict(lexical) if lexical else None
        # {label: [word, ...]}: words that count for a class only as words (BM25), never embedded: WordNet's kinds and
        # derived words of the class ("mare", "bantam", "cellist"; querynet.words.bank_words)
        self.words = words or {}
        # The power B of the mixture's evidence, p_c * (EVIDENCE_FLOOR + presence_c) ** B (None: not used),
        # and how many of the query's first classes it may choose among (None: all). Without a limit a strong power
        # moves a picture of an absent sound onto whatever the mixture holds (scripts/probe_absent_pictures.py).
        self.evidence_power: float | None = None
        self.evidence_top: int | None = None

    @property
    def words(self) -> dict[str, list[str]]:
        return self._words

    @words.setter
    def words(self, words: dict) -> None:
        words = {label: list(found) for label, found in words.items()}
        unknown = sorted(set(words) - set(self.labels))
        if unknown:
            raise ValueError(f"words for labels the matcher lacks: {', '.join(unknown[:3])}")
        self._words, self._index, self._mentions = words, None, None  # the indexes are built again from the new words

    def _lexical_index(self):
        if self._index is None:
            from omnisep.lexical import LexicalIndex

            if not self.texts:
                raise ValueError("a matcher that scores words needs its entries' texts")
            # The words-only entries come after the embedded ones, so leave-one-out entry numbers stay the bank's.
            texts, classes = list(self.texts), self.entry_class.tolist()
            for label, found in self.words.items():
                texts += found
                classes += [self.labels.index(label)] * len(found)
            self._index = LexicalIndex(texts, classes, len(self.labels))
        return self._index

    def _mention_index(self):
        if self._mentions is None:
            from omnisep.lexical import MentionIndex

            phrases = [(word, self.labels.index(label)) for label, found in self.words.items() for word in found]
            self._mentions = MentionIndex([p for p, _ in phrases], [c for _, c in phrases], len(self.labels))
        return self._mentions

    def class_scores(self, queries: torch.Tensor, exclude: torch.Tensor | None = None,
                     texts=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(score per class ``[N, C]``, best cosine per class ``[N, C]``). The score is a soft maximum of the cosines over
        the class's entries, plus, when the query's ``texts`` are given and the matcher scores words, the lexical
        weight times the words' BM25 score against the class's entries (:mod:`omnisep.lexical`), and the mention
        weight where the text names one of the class's words-only phrases.

        ``exclude`` (``[N, entries]`` bool) leaves entries out per query (leave-one-out calibration).
        """
        cos = F.normalize(torch.as_tensor(queries).float().reshape(-1, self.embeddings.shape[1]), dim=-1) @ self.embeddings.T
        if exclude is not None:
            cos = cos.masked_fill(exclude, -math.inf)
        scores = torch.full((cos.shape[0], len(self.labels)), -math.inf)
        best = torch.full_like(scores, -math.inf)
        for c in range(len(self.labels)):
            rows = cos[:, self.entry_class == c]
            scores[:, c] = self.entry_temperature * torch.logsumexp(rows / self.entry_temperature, dim=1)
            best[:, c] = rows.max(dim=1).values
        if self._reads(texts):
            if len(texts) != len(scores):
                raise ValueError(f"{len(texts)} texts for {len(scores)} queries")
            leave_out = None if exclude is None else [row.nonzero().flatten().tolist() for row in exclude]
            scores = scores + self.lexical["weight"] * self._lexical_index().scores(list(texts), leave_out)
            if self.lexical.get("mention") and self.words:
                scores = scores + self.lexical["mention"] * self._mention_index().mentions(list(texts))
        return scores, best

    def _reads(self, texts) -> bool:
        return texts is not None and bool(self.lexical) and self.lexical["weight"] > 0

    def _calibration(self, texts) -> tuple[float, float, float]:
        """(temperature, min_probability, min_cosine) for queries with or without words."""
        if self._reads(texts):
            return self.lexical["temperature"], self.lexical["min_probability"], self.lexical["min_cosine"]
        return self.temperature, self.min_probability, self.min_cosine

    def probabilities(self, queries: torch.Tensor, texts=None) -> torch.Tensor:
        return torch.softmax(self.class_scores(queries, texts=texts)[0] / self._calibration(texts)[0], dim=-1)

    def match(self, queries: torch.Tensor, texts=None, presence: dict | None = None) -> list[Match]:
        """The answer for each query ``[N, D]``; ``texts`` (``N`` strings, the queries' words) let the words count.

        ``presence`` (``{label: presence}``, how likely each label is in the mixture to separate) weighs each class's
        probability by ``(EVIDENCE_FLOOR + presence) ** evidence_power`` where the matcher records a power, among the
        query's first ``evidence_top`` classes where it records a limit (the others drop out): a picture that looks
        like a violin or a cello, in a recording that holds a cello, is the cello. An answer so weighed is given as
        its class's row, whatever ``give`` says: the mixture decided between the candidates."""
        scores, best = self.class_scores(queries, texts=texts)
        temperature, min_probability, min_cosine = self._calibration(texts)
        probabilities = torch.softmax(scores / temperature, dim=-1)
        weighed = presence is not None and self.evidence_power is not None
        if weighed:
            held = torch.tensor([float(presence.get(label, 0.0)) for label in self.labels])
            factor = (EVIDENCE_FLOOR + held.clamp(0, 1)) ** self.evidence_power
            if self.evidence_top:
                factor = factor * self._within_top(probabilities)
            probabilities = probabilities * factor
            probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
        top = probabilities.topk(min(2, len(self.labels)), dim=-1)
        found = []
        for row in range(len(probabilities)):
            order = top.indices[row].tolist()
            first, second = order[0], order[-1]
            p = float(probabilities[row, first])
            cosine = float(best[row, first])
            known = p >= min_probability and cosine >= min_cosine
            if weighed:  # the mixture decided between the candidates: the answer is its row (as validated)
                given = ((self.labels[first], 1.0),)
            elif self.give == "blend-2":
                weights = top.values[row] / top.values[row].sum()
                given = tuple((self.labels[i], float(w)) for i, w in zip(order, weights))
            else:
                given = ((self.labels[first], 1.0),) if known or self.give == "snap" else ()
            contenders = ()
            if self.evidence_power is not None and not weighed:
                # p_c (floor + 1)^B can beat the first's p_1 floor^B only if p_c >= p_1 (floor / (1 + floor))^B
                reach = p * (EVIDENCE_FLOOR / (1 + EVIDENCE_FLOOR)) ** self.evidence_power
                could = probabilities[row] >= reach
                if self.evidence_top:
                    could = could & self._within_top(probabilities[row : row + 1])[0].bool()
                contenders = tuple(self.labels[i] for i in could.nonzero().flatten().tolist())
                contenders = contenders if len(contenders) > 1 else ()
            found.append(Match(self.labels[first], p, cosine, self.labels[second], float(probabilities[row, second]), known, given,
                               self.evidence_power if weighed else None, contenders,
                               far=p >= min_probability and cosine < min_cosine))
        return found

    def _within_top(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``1.0`` for each row's first ``evidence_top`` classes, ``0.0`` for the others."""
        bar = probabilities.topk(min(self.evidence_top, probabilities.shape[-1]), dim=-1).values[..., -1:]
        return (probabilities >= bar).float()

    def labels_only(self) -> "ClassMatcher":
        """The same classes with only their ``label`` entries (all entries where kinds are unknown)."""
        keep = [i for i, kind in enumerate(self.kinds or []) if kind == "label"] or list(range(len(self.embeddings)))
        return ClassMatcher(self.labels, [self.labels[self.entry_class[i]] for i in keep], self.embeddings[keep],
                            [self.texts[i] for i in keep] if self.texts else None, ["label"] * len(keep),
                            self.entry_temperature, self.temperature, self.min_probability, self.min_cosine, self.give)

    def calibrated(self, record: dict) -> "ClassMatcher":
        self.temperature = float(record["temperature"])
        self.min_probability = float(record["min_probability"])
        self.min_cosine = float(record["min_cosine"])
        self.give = _checked_give(record.get("give", "snap-known"))
        return self._read_evidence(record)

    def _read_evidence(self, record: dict) -> "ClassMatcher":
        """The rule for what the mixture holds, as a calibration or a bank records it (absent: not used)."""
        power, top = record.get("mixture_evidence"), record.get("mixture_evidence_top")
        self.evidence_power = None if power is None else float(power)
        self.evidence_top = None if top is None else int(top)
        return self

    @classmethod
    def for_pictures(cls, bank: str | os.PathLike = DEFAULT_BANK, calibration: str | os.PathLike = DEFAULT_PICTURES) -> "ClassMatcher":
        """Query-Aug for picture queries: the bank's label entries with the picture calibration."""
        path = Path(calibration)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("format") != PICTURES_FORMAT:
                raise ValueError("not a picture calibration")
            return cls.load(bank).labels_only().calibrated(record)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OmniSepError(f"Query-Aug picture calibration {describe(path)} is missing or damaged ({type(error).__name__}).") from None

    # -- storage -----------------------------------------------------------------------

    def save(self, path: str | os.PathLike, record: dict | None = None) -> Path:
        from omnisep.encoders.weights import save_safetensors_atomic, write_json_atomic

        path = Path(path)
        save_safetensors_atomic({"embeddings": self.embeddings.half().contiguous()}, path, {"format": "omnisep-query-aug-bank"})
        write_json_atomic(path.with_suffix(".json"), {
            "format": "omnisep-query-aug-bank", "labels": self.labels,
            "entries": [{"label": self.labels[c], "kind": k, "text": t}
                        for c, k, t in zip(self.entry_class.tolist(), self.kinds or [], self.texts or [])],
            "entry_temperature": self.entry_temperature, "temperature": self.temperature,
            "min_probability": self.min_probability, "min_cosine": self.min_cosine,
            "give": self.give, **({"lexical": self.lexical} if self.lexical else {}),
            **({"words": self.words} if self.words else {}),
            **({"mixture_evidence": self.evidence_power} if self.evidence_power is not None else {}),
            **({"mixture_evidence_top": self.evidence_top} if self.evidence_top is not None else {}),
            "record": record or {},
        })
        return path

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_BANK) -> "ClassMatcher":
        from safetensors.torch import load_file

        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            embeddings = load_file(str(path))["embeddings"].float()
            entries = meta["entries"]
            matcher = cls(meta["labels"], [e["label"] for e in entries], embeddings, [e["text"] for e in entries],
                          [e["kind"] for e in entries], meta["entry_temperature"], meta["temperature"],
                          meta["min_probability"], meta["min_cosine"], meta.get("give", "snap-known"), meta.get("lexical"),
                          meta.get("words"))
            return matcher._read_evidence(meta)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OmniSepError(f"Query-Aug bank {describe(path)} is missing or damaged ({type(error).__name__}).") from None


def calibrate(matcher: ClassMatcher, scores: torch.Tensor, best: torch.Tensor, labels, cosine_quantile: float = 0.01,
              lexical_weight: float | None = None) -> dict:
    """Fit ``matcher``'s temperature (least log-loss on a grid) and its unknown thresholds from the scores of
    calibration queries (``labels``: the true class, or None for an out-of-vocabulary query): a probability that
    95 % of the in-vocabulary queries reach, and a cosine floor that ``1 - cosine_quantile`` of them reach.

    With ``lexical_weight`` the scores are those of queries with words, and the fit becomes the matcher's
    lexical calibration (the one for queries without words is kept)."""
    labels = list(labels)
    known = [i for i, label in enumerate(labels) if label is not None]
    truth = torch.tensor([matcher.labels.index(labels[i]) for i in known])
    grid = [0.002 * 1.25**k for k in range(30)]
    nll = [float(F.cross_entropy(scores[known] / t, truth)) for t in grid]
    temperature = grid[int(torch.tensor(nll).argmin())]
    probabilities = torch.softmax(scores / temperature, dim=-1)
    top_p = probabilities.max(dim=1).values
    min_probability = float(torch.quantile(top_p[known], 0.05))
    # The cosine floor only catches queries far from every entry (text: 1 % of in-vocabulary queries may fall under it).
    min_cosine = float(torch.quantile(best.max(dim=1).values[known], cosine_quantile))
    if lexical_weight is None:
        matcher.temperature, matcher.min_probability, matcher.min_cosine = temperature, min_probability, min_cosine
    else:
        matcher.lexical = {**(matcher.lexical or {}), "weight": float(lexical_weight), "temperature": temperature,
                           "min_probability": min_probability, "min_cosine": min_cosine}
    unknown = [i for i, label in enumerate(labels) if label is None]
    rejected = [bool(top_p[i] < min_probability or best[i].max() < min_cosine) for i in unknown]
    return {"temperature": temperature, "min_probability": min_probability, "min_cosine": min_cosine,
            "calibration_known": len(known), "calibration_unknown": len(unknown), "calibration_unknown_rejected": sum(rejected),
            "calibration_top1": float((probabilities[known].argmax(1) == truth).float().mean())}


def picture_recogniser(encoder, calibration: str | os.PathLike | None = None, recogniser: str | os.PathLike | None = None):
    """What recognises a picture for picture Query-Aug, matching the calibration it was fitted with: the picture
    recogniser when the calibration says so (``"recogniser": true``), else ``encoder`` with the image head v2."""
    from omnisep.encoders.recogniser import DEFAULT_RECOGNISER, PictureRecogniser

    path = Path(calibration or DEFAULT_PICTURES)
    try:
        fitted_on_recogniser = bool(json.loads(path.read_text(encoding="utf-8")).get("recogniser", False))
    except (OSError, ValueError, AttributeError):
        fitted_on_recogniser = False  # ClassMatcher.for_pictures names a missing or damaged calibration
    if recogniser is not None or fitted_on_recogniser:
        return PictureRecogniser.load(recogniser or DEFAULT_RECOGNISER, encoder=encoder)
    return encoder.with_heads("v2")
