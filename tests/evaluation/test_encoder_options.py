"""A checkpoint records the encoder options it was trained with, and evaluation rebuilds that encoder."""

from __future__ import annotations

import json

import torch

from omnisep.data.mixtures import load_test_set
from omnisep.encoders import get_encoder
from omnisep.evaluation.protocol import EvaluationConfig, evaluate
from omnisep.models import SeparateNet, SeparateNetConfig
from omnisep.queries import QueryBank
from omnisep.states import read_config, save_checkpoint

from test_protocol import _write_item

DIM = 24  # not the toy encoder's default (64): only the recorded options give it back


def test_a_checkpoint_trained_with_encoder_options_is_evaluated_with_them(tmp_path):
    labels = {"dog barking": 300.0, "playing violin": 1200.0}
    rows = []
    for seed, (label, tone) in enumerate(labels.items()):
        item_id = f"item-{seed}"
        _write_item(tmp_path, item_id, tone, (200, 10 * seed, 0), seed)
        rows.append({"id": item_id, "audio": f"{item_id}.wav", "image": f"{item_id}.png", "label": label, "split": "test"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mixtures_test.jsonl").write_text(json.dumps({"id": "m0", "target": "item-0", "interferers": ["item-1"], "seed": 0}) + "\n")

    encoder = get_encoder("toy", dim=DIM)  # as `omnisep train` builds it from encoder.options
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=DIM))
    bank = QueryBank(sorted(labels), encoder.embed_text(sorted(labels)))
    checkpoint = save_checkpoint(tmp_path / "ckpt", model, encoder.identity(), bank)
    assert read_config(checkpoint)["encoder"]["options"] == {"dim": DIM}

    config = EvaluationConfig(workers=0, backend="fast", modes=("text",), with_negative=False, oracles=False,
                              sweep_modes=("text",), length=8192)
    result = evaluate(checkpoint, load_test_set(tmp_path / "mixtures_test.jsonl"), tmp_path / "eval", config,
                      progress=False)  # no encoder given: rebuilt from the checkpoint's record
    assert any(len(row.scores) == 1 for row in result.table1)
