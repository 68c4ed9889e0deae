"""Evaluation as in the paper: BSSEval v4 metrics, the query-mode protocol, tables and figures.

- ``metrics``: SDR/SIR/SAR (museval, or fast-bss-eval with the same numbers), SI-SDR, mean ± SEM;
- ``protocol``: one run scores text/image/audio/composed queries, negative queries,
  Query-Aug and the alpha sweep, with the mixture and oracle masks for scale;
- ``reports`` / ``plots``: Tables 1-3 as Markdown and CSV, Fig. 2 as PNG, written atomically;
- ``ablations``: Table 2 from a set of trained runs.
"""
