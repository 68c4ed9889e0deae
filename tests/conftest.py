"""Shared fixtures.

``tiny_checkpoint`` is a real checkpoint directory (states.save_checkpoint)
of a tiny random-init Separate-Net whose query encoder is the deterministic
``toy`` encoder, with a three-label Query-Aug bank: small enough that a
separation of a few seconds takes milliseconds. Made once per session; treat
it as read-only.
"""

from __future__ import annotations

import pytest

TINY_LABELS = ("dog barking", "violin", "speech")
TINY_MODEL = {"ngf": 4, "depth": 4, "k": 4}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from omnisep.encoders import get_encoder
    from omnisep.models import SeparateNet, SeparateNetConfig
    from omnisep.queries import QueryBank
    from omnisep.states import save_checkpoint

    encoder = get_encoder("toy")
    torch.manual_seed(1234)
    model = SeparateNet(SeparateNetConfig(emb_dim=encoder.dim, **TINY_MODEL)).eval()
    bank = QueryBank(list(TINY_LABELS), encoder.embed_text(list(TINY_LABELS)))
    directory = tmp_path_factory.mktemp("checkpoints") / "tiny"
    save_checkpoint(directory, model, encoder.identity(), bank, training={"note": "random init, for tests"})
    return directory
