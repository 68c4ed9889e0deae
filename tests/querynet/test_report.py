"""The Query-Net report's SDRi rows score a query as `omnisep evaluate` does, query contrast included."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch

from omnisep.cli import main
from omnisep.data.mixtures import load_test_set
from omnisep.querynet.report import sdri_rows
from omnisep.states import load_checkpoint, save_checkpoint

TONES = {"dog barking": 300.0, "violin": 1200.0, "speech": 3000.0}  # the tiny checkpoint's labels


def test_sdri_rows_equal_the_evaluation_of_the_same_checkpoint(tiny_checkpoint, tmp_path):
    t = np.arange(32000) / 16000
    rows = []
    for label, tone in TONES.items():
        item = label.split()[0]
        wave = 0.4 * np.sin(2 * np.pi * tone * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        sf.write(tmp_path / f"{item}.wav", wave.astype(np.float32), 16000)
        rows.append({"id": item, "audio": f"{item}.wav", "label": label, "split": "test"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = [("dog", "violin"), ("speech", "dog"), ("violin", "speech")]
    (tmp_path / "mixtures.jsonl").write_text(
        "".join(json.dumps({"id": f"m{i}", "target": a, "interferers": [b], "seed": i}) + "\n" for i, (a, b) in enumerate(pairs))
    )
    loaded = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.scale.fill_(40.0)  # logits far from 0, so that the contrast changes the masks
    model_dir = tmp_path / "with-contrast"  # the tiny model, with a query contrast as v2 records one
    save_checkpoint(model_dir, loaded.model, loaded.config["encoder"], loaded.bank, inference={"contrast": {"alpha": 0.5}})

    test_set = load_test_set(tmp_path / "mixtures.jsonl", tmp_path / "manifest.jsonl")
    anchor = dict(zip(loaded.bank.labels, torch.as_tensor(loaded.bank.embeddings)))
    text = lambda m: anchor[test_set.items[test_set.mixtures[m][0]].label]  # noqa: E731
    scores = sdri_rows(model_dir, test_set, {"text": text}, [0, 1, 2], log=lambda *a: None)

    out = tmp_path / "evaluation"
    assert main(["evaluate", str(model_dir), str(tmp_path / "mixtures.jsonl"), "--modes", "text", "--no-negative",
                 "--no-oracles", "--backend", "fast", "--workers", "0", "--out", str(out), "--quiet"]) == 0
    evaluated = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores["text"]) == len(evaluated) == 3
    for (index, sdri), row in zip(scores["text"], evaluated):
        assert np.isfinite(sdri)
        # Without the contrast the first mixture scores 2e-4 dB off here: the tolerance must stay tight.
        assert abs(sdri - row["scores"]["text"]["sdri"]) < 1e-6, (index, sdri, row["scores"]["text"])


def test_picture_answers_are_summarised_per_style():
    from omnisep.query_aug import Match
    from omnisep.querynet.report import picture_answer_table

    def answer(label, known):
        return Match(label, 0.9 if known else 0.1, 0.5, "other", 0.05, known)

    rows = [("emoji", answer("dog", True), "dog"), ("emoji", answer("cat", True), "dog"),
            ("emoji", answer("dog", False), "dog"), ("emoji", answer("cow", False), "dog"),
            ("clip art", answer("cow", True), "cow")]
    table = picture_answer_table(rows)
    assert table["emoji"] == {"queries": 4, "answered": 0.5, "top1_of_answered": 0.5, "top1": 0.5}
    assert table["clip art"] == {"queries": 1, "answered": 1.0, "top1_of_answered": 1.0, "top1": 1.0}
