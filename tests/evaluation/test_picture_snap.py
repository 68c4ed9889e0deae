"""The evaluation's picture Query-Aug snaps a picture as the API does: to its label's row in the model's bank."""

from pathlib import Path

import torch

from omnisep.evaluation.auto_negative import PictureSnap
from omnisep.states import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
V2 = ROOT / "src/omnisep/pretrained/v2"
VIOLIN = ROOT / "examples/queries/playing-violin.png"


def test_the_shipped_recogniser_snaps_an_example_picture_to_its_label_row():
    bank = load_checkpoint(V2).bank
    snap = PictureSnap()
    own = torch.randn(bank.dim)
    query, label = snap.snap(own, VIOLIN, bank)
    assert label == "playing violin"
    torch.testing.assert_close(query, torch.as_tensor(bank.embeddings[bank.labels.index(label)]))
    assert snap.match(VIOLIN) is snap.match(VIOLIN)  # cached
    assert snap.heads == "recogniser"  # the shipped calibration was fitted on the picture recogniser, so it recognises
