import csv
import dataclasses
import io
import json
import math

import pytest

from omnisep.cli.evaluate import parse_alphas
from omnisep.errors import OmniSepError
from omnisep.evaluation.ablations import SETTINGS, paired_difference, read_ablation_run, training_overrides
from omnisep.evaluation.metrics import ItemScore, Summary
from omnisep.plotting.sweep import plot_alpha_sweep
from omnisep.evaluation.reports import (
    AblationRun,
    ConditionResult,
    ScoreLog,
    atomic_write_text,
    csv_table,
    markdown_table,
    table2_csv,
    table2_markdown,
)


def score(sdr, sdr_mix=0.0):
    return ItemScore(sdr=sdr, sir=sdr + 10, sar=sdr + 1, si_sdr=sdr - 1, sdr_mix=sdr_mix, sir_mix=0.0, sar_mix=50.0, si_sdr_mix=-1.0)


def test_markdown_rows_show_mean_sem_and_median():
    rows = [
        ConditionResult("text query", "Text-queried (TQSS)", [score(1.0), score(2.0), score(6.0)], skipped=1),
        ConditionResult("image query", "Image-queried (IQSS)", [score(4.0, sdr_mix=1.0)]),
    ]
    text = markdown_table("Table 1", rows, ("sdr", "sdri"))
    lines = text.splitlines()
    assert lines[2] == "| Method | Mean SDR | Med SDR | Mean SDRi | Med SDRi | scored | skipped |"
    # mean 3, SEM = std([1,2,6], ddof=1)/sqrt(3) = sqrt(7)/sqrt(3) = 1.5275
    assert "| text query | 3.00 ± 1.53 | 2.00 | 3.00 ± 1.53 | 2.00 | 3 | 1 |" in lines
    assert "| image query | 4.00 | 4.00 | 3.00 | 3.00 | 1 | 0 |" in lines  # one value: no SEM
    assert lines.index("| *Image-queried (IQSS)* | | | | | | |") > lines.index("| *Text-queried (TQSS)* | | | | | | |")


def test_csv_keeps_full_precision():
    rows = [ConditionResult("text query", "TQSS", [score(1.0), score(2.0)])]
    table = list(csv.DictReader(io.StringIO(csv_table(rows))))
    assert float(table[0]["sdr_mean"]) == 1.5
    assert float(table[0]["sdr_sem"]) == pytest.approx(0.5)
    assert float(table[0]["sir_median"]) == 11.5
    assert float(table[0]["si_sdri_mean"]) == pytest.approx(1.5 - 1 + 1)


def test_table2_average_is_mean_of_means_and_sems():
    run = AblationRun("#4", True, True, True, False, Summary(6.37, 0.68, 5.68, 100), Summary(6.53, 0.68, 6.33, 100))
    markdown = table2_markdown([run])
    # the paper's row #4: AVG SDR 6.45 ± 0.68
    assert "| #4 | ✓ | ✓ | ✓ |  | 6.37 ± 0.68 | 5.68 | 6.53 ± 0.68 | 6.33 | 6.45 ± 0.68 |" in markdown


def write_scores(path, sdrs):
    """scores.jsonl of an evaluation: {mixture id: (text SDR, image SDR or None)}."""
    rows = [{"mixture_id": m, "mixture_score": {"sdr": 0.0},
             "scores": {"text": {"sdr": t}, "image": None if i is None else {"sdr": i}}}
            for m, (t, i) in sdrs.items()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_paired_difference_uses_only_mixtures_both_runs_scored(tmp_path):
    mine = write_scores(tmp_path / "mine.jsonl", {"m0": (5.0, 1.0), "m1": (7.0, None), "m2": (4.0, 3.0), "m3": (2.0, 2.5)})
    reference = write_scores(tmp_path / "ref.jsonl", {"m0": (4.0, 2.0), "m1": (5.0, 9.0), "m2": (4.5, 2.0)})
    text = paired_difference(mine, reference, "text")
    assert text.count == 3 and text.mean == pytest.approx((1.0 + 2.0 - 0.5) / 3)
    image = paired_difference(mine, reference, "image")  # m1: no image score here; m3: not in the reference
    assert image.count == 2 and image.mean == pytest.approx(0.0) and image.sem == pytest.approx(1.0)
    with pytest.raises(OmniSepError, match="did not finish"):
        paired_difference(tmp_path / "missing.jsonl", reference, "text")


def test_table2_shows_paired_differences_when_given():
    plain = Summary(3.0, 0.2, 3.0, 480)
    runs = [
        AblationRun("#4", True, True, True, False, plain, plain, Summary(0.63, 0.1, 0.5, 480), Summary(-0.28, 0.09, 0.0, 408)),
        AblationRun("#5", True, True, True, True, plain, plain, Summary(0.0, 0.0, 0.0, 480), Summary(0.0, 0.0, 0.0, 408)),
    ]
    markdown = table2_markdown(runs, reference="#5")
    assert "| TQSS Δ vs #5 | IQSS Δ vs #5 |" in markdown
    assert "| 3.00 ± 0.20 | +0.63 ± 0.10 | -0.28 ± 0.09 |" in markdown
    rows = list(csv.DictReader(io.StringIO(table2_csv(runs))))
    assert float(rows[0]["iqss_vs_reference_mean"]) == -0.28 and rows[1]["tqss_vs_reference_sem"] == "0.0"
    assert "Δ vs" not in table2_markdown([dataclasses.replace(runs[0], tqss_vs_reference=None, iqss_vs_reference=None)])


def test_score_log_is_partial_until_finished(tmp_path):
    log = ScoreLog(tmp_path)
    log.write({"a": 1})
    assert (tmp_path / "scores.partial.jsonl").read_text() == '{"a": 1}\n'
    assert not (tmp_path / "scores.jsonl").exists()
    log.finish()
    assert (tmp_path / "scores.jsonl").read_text() == '{"a": 1}\n'
    assert not (tmp_path / "scores.partial.jsonl").exists()


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "table.md"
    atomic_write_text(path, "old\n")

    with pytest.raises(TypeError):
        atomic_write_text(path, 12345)  # not text: nothing replaces the old file
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_plot_writes_a_png(tmp_path):
    sweep = {
        ("text", "proportional"): [(0.0, Summary(5.0, 0.5, 5.0, 10)), (1.0, Summary(6.0, 0.5, 6.0, 10))],
        ("text", "naive"): [(0.0, Summary(5.0, 0.5, 5.0, 10)), (1.0, Summary(4.0, math.nan, 4.0, 1))],
    }
    path = plot_alpha_sweep(sweep, tmp_path / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_alpha_grids():
    assert parse_alphas("0:2:0.25") == (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    assert parse_alphas("0, 0.5,1") == (0.0, 0.5, 1.0)
    with pytest.raises(OmniSepError, match="start:stop:step"):
        parse_alphas("0:2")


def test_ablation_rows_come_from_evaluation_summaries(tmp_path):
    summary = {"table1": {
        "text query": {"sdr": {"mean": 6.0, "sem": 0.5, "median": 5.5, "count": 40}},
        "image query": {"sdr": {"mean": 4.0, "sem": 0.7, "median": 3.5, "count": 40}},
    }}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    run = read_ablation_run(SETTINGS[4], path)
    assert (run.text, run.image, run.audio, run.mixup) == (True, True, True, True)
    assert run.average == (5.0, pytest.approx(0.6))
    assert read_ablation_run(SETTINGS[0], path).image is False
    with pytest.raises(OmniSepError, match="did not finish"):
        read_ablation_run(SETTINGS[0], tmp_path / "missing.json")
    assert training_overrides(SETTINGS[2]) == ['queries.modality_mode="switch"', 'queries.modalities=["text","image"]']
