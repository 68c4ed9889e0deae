"""The paper's evaluation protocol: every query mode of Table 1 in one run.

Each test item goes through the one signal path (``omnisep.apply.separate_tensor``,
exactly what ``omnisep separate`` computes); the network's query-independent
half runs once per item for every query of the run, so the cost is the
metrics, which run in a process pool while the main process separates the
next items.

Queries, per test item (target T, interferer I, mixture = T/2 + I/2):

* text: the embedding of T's raw class label;
* image: T's own image embedding (its frames, as cached);
* audio: the mean of ``audio_clips`` (S) audio embeddings of T's class drawn
  from the TRAINING split with a seed per class, normalised;
* composed: ``normalize((2 image + 2 text + audio) / 5)`` (weights configurable);
* each with a negative query (eq. 4) from I's label by default (or I's image or
  audio, or the same modality as the query), alpha 0.5, proportional form;
* Query-Aug (Table 3): the label, or a free-form description of it, each with
  and without snapping to the checkpoint's QueryBank (eq. 5);
* the alpha sweep (Fig. 2): proportional vs naive negatives over a grid of alphas;
* and, for scale, the unprocessed mixture and two oracles computed on the
  sources' STFT and reconstructed through the same masked iSTFT as the model:
  the ideal binary mask ``|S_T| > 0.5 |X|`` (the training target, in linear
  frequency) and the ideal ratio mask ``|S_T| / (|S_T| + |S_I|)``.

The protocol's parts, one module each: ``config`` (what a run measures),
``plan`` (table rows and the unique queries), ``queries`` (building them per
mixture), ``oracles``, ``pool`` (metrics in worker processes), ``run`` (the
loop) and ``results`` (rows and sweep points). Test sets are read by
``omnisep.data.mixtures.load_test_set``.
"""

from omnisep.evaluation.protocol.config import (
    DEFAULT_SWEEP,
    NEGATIVE_SOURCES,
    QUERY_MODES,
    EvaluationConfig,
    read_descriptions,
)
from omnisep.evaluation.protocol.plan import QuerySpec, Row, plan_rows
from omnisep.evaluation.protocol.results import EvaluationResult
from omnisep.evaluation.protocol.run import evaluate

__all__ = [
    "DEFAULT_SWEEP",
    "NEGATIVE_SOURCES",
    "QUERY_MODES",
    "EvaluationConfig",
    "EvaluationResult",
    "QuerySpec",
    "Row",
    "evaluate",
    "plan_rows",
    "read_descriptions",
]
