"""Every query of a run, built per test mixture from cached (or freshly computed) embeddings."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from omnisep import modalities
from omnisep.data.mixtures import TestSet
from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.protocol.config import EvaluationConfig
from omnisep.evaluation.protocol.plan import QuerySpec
from omnisep.queries import QueryRows

AUDIO_ROW = modalities.index("audio")


class QueryBuilder:
    """Builds every query of a run for one mixture from cached (or computed) embeddings."""

    def __init__(self, test_set: TestSet, table, config: EvaluationConfig, bank=None, encoder=None):
        """``config.contrast`` > 0 adds the query contrast against ``bank``'s background query to every query."""
        self.test_set = test_set
        self.table = table  # data.mixing.QueryTable
        self.config = config
        self.bank = bank
        self._class_audio: dict[str, torch.Tensor] = {}
        self._description_vectors: dict[str, torch.Tensor] = {}
        self.background = None
        if (config.contrast or 0) > 0:
            from omnisep.queries import background_query

            if bank is None:
                raise OmniSepError("The query contrast needs the checkpoint's query bank, and it has none.")
            self.background = background_query(bank.embeddings)
        if config.descriptions is not None:
            if encoder is None:
                raise ValueError("free-form descriptions need an encoder")
            texts = sorted({d for label in self._target_labels() for d in config.descriptions[label]})
            self._description_vectors = dict(zip(texts, encoder.embed_text(texts)))

    def _target_labels(self) -> list[str]:
        items = self.test_set.items
        return sorted({items[row[0]].label for row in self.test_set.mixtures})

    def modality(self, item_index: int, modality: str) -> torch.Tensor | None:
        item = self.test_set.items[item_index]
        if modality == "audio":
            return self.class_audio(item.label)
        rows, available = self.table.get(item.id)
        position = modalities.index(modality)
        return rows[position] if bool(available[position]) else None

    def class_audio(self, label: str) -> torch.Tensor:
        """Mean of S training clips' audio embeddings of a class (seeded per class), normalised."""
        if label in self._class_audio:
            return self._class_audio[label]
        candidates = [
            item for item in self.test_set.items if item.label == label and (item.split or "").lower() == "train"
        ]
        if not candidates:
            raise OmniSepError(
                f"Manifest {describe(self.test_set.manifest_path)} has no training clip of class '{label}' "
                "for its audio query; evaluate without the audio mode (--modes text,image,composed)."
            )
        rng = np.random.default_rng([self.config.seed, zlib.crc32(label.encode("utf-8"))])
        order = rng.permutation(len(candidates))
        vectors = []
        for index in order:
            rows, available = self.table.get(candidates[index].id)
            if bool(available[AUDIO_ROW]):
                vectors.append(torch.nn.functional.normalize(rows[AUDIO_ROW], dim=-1))
            if len(vectors) == self.config.audio_clips:
                break
        if not vectors:
            raise OmniSepError(f"No training clip of class '{label}' has an audio embedding for its audio query.")
        query = torch.nn.functional.normalize(torch.stack(vectors).mean(0), dim=-1)
        self._class_audio[label] = query
        return query

    def base_query(self, item_index: int, modality: str, mixture_index: int) -> torch.Tensor:
        from omnisep.queries import normalize, omni_query

        if modality == "composed":
            image, text, audio = (self.modality(item_index, m) for m in ("image", "text", "audio"))
            return omni_query(image, text, audio, self.config.omni_weights)
        if modality == "description":
            label = self.test_set.items[item_index].label
            choices = self.config.descriptions[label]
            rng = np.random.default_rng([self.config.seed, mixture_index])
            return self._description_vectors[choices[int(rng.integers(len(choices)))]]
        vector = self.modality(item_index, modality)
        # An item without this modality (a class with no picture, say) cannot be
        # queried that way: the caller skips that row for this mixture.
        return None if vector is None else normalize(vector)

    def negative_query(self, interferers: Sequence[int], modality: str, mixture_index: int) -> torch.Tensor:
        from omnisep.queries import compose

        source = modality if self.config.negative_source == "same" else self.config.negative_source
        if source == "description":
            source = "text"
        parts = [self.base_query(index, source, mixture_index) for index in interferers]
        if any(part is None for part in parts):
            return None
        return compose(parts, [1.0] * len(parts))

    def build(self, mixture_index: int, specs: Sequence[QuerySpec]) -> tuple[QueryRows, list[bool]]:
        """The queries of one mixture (``len(specs)`` outputs) and whether each could be formed.

        A query whose modality the target (or, for a negative query, an
        interferer) lacks is a zero placeholder, and its row is counted as
        skipped for this mixture.
        """
        from omnisep.queries import contrast_terms, negative_terms

        target, *interferers = self.test_set.mixtures[mixture_index]
        outputs, available = [], []
        for spec in specs:
            query = self.base_query(target, spec.modality, mixture_index)
            terms = None
            if query is not None and spec.query_aug:  # eq. 5 comes before the negative query
                if self.bank is None:
                    raise OmniSepError("The checkpoint has no Query-Aug bank, so Query-Aug cannot be evaluated.")
                query = self.bank.retrieve(query)[0]
            if query is not None:
                terms = [(query, 1.0)]
            if query is not None and spec.negative_mode != "none":
                query_negative = self.negative_query(interferers, spec.modality, mixture_index)
                terms = None if query_negative is None else negative_terms(query, query_negative, spec.alpha, spec.negative_mode)
            available.append(terms is not None)
            strength = (self.config.contrast or 0.0) if spec.negative_mode == "none" else 0.0  # as the API: not with a negative
            outputs.append([(torch.zeros(self.table.dim), 1.0)] if terms is None
                           else contrast_terms(terms, self.background, strength))
        return QueryRows.from_terms(outputs, self.config.second_look), available


def load_query_table(test_set: TestSet, needed: set[int], cache_path, encoder):
    from omnisep.data.mixing import QueryTable

    items = [test_set.items[i] for i in sorted(needed)]
    if cache_path is not None:
        from omnisep.data.cache import EmbeddingCache

        return QueryTable(items, cache=EmbeddingCache(cache_path))
    return QueryTable(items, encoder=encoder)


def needed_items(test_set: TestSet, config: EvaluationConfig) -> set[int]:
    needed = {i for row in test_set.mixtures for i in row}
    if "audio" in config.modes or "composed" in config.modes or config.negative_source == "audio":
        labels = {test_set.items[i].label for i in needed}
        needed |= {
            i for i, item in enumerate(test_set.items) if item.label in labels and (item.split or "").lower() == "train"
        }
    return needed


def check_descriptions(config: EvaluationConfig, test_set: TestSet, descriptions_path) -> None:
    if config.descriptions is None:
        return
    labels = sorted({test_set.items[row[0]].label for row in test_set.mixtures})
    missing = [label for label in labels if not config.descriptions.get(label)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise OmniSepError(
            f"Descriptions file {describe(descriptions_path or 'descriptions')} has no description for class '{missing[0]}'{more}."
        )
