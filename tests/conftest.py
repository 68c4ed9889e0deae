"""Shared fixtures.

``tiny_checkpoint`` is a real checkpoint directory (states.save_checkpoint)
of a tiny random-init Separate-Net whose query encoder is the deterministic
``toy`` encoder, with a three-label Query-Aug bank: small enough that a
separation of a few seconds takes milliseconds. Made once per session; treat
it as read-only.
"""

from __future__ import annotations

import numpy as np
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


@pytest.fixture(scope="session")
def band_separator():
    """A Separate-Net whose masks are known by construction: label "low" keeps the low half of
    the (warped) spectrum, "high" the high half, each leaking a little of the other; "low-ish"
    is a near-synonym of "low" (cosine 0.96) and "hum" sits between (mask 0.5 everywhere).

    Mask logits are +-1.52 for a plain "low"/"high" query, so a negative query of the other
    label sharpens them (fewer leaks): the interferer of a low + high mixture is known.
    """
    import math
    from types import SimpleNamespace

    import torch

    from omnisep.models import SeparateNet, SeparateNetConfig
    from omnisep.queries import QueryBank

    class BandNet(SeparateNet):
        def features(self, mag_warped):
            rows = torch.arange(mag_warped.shape[-2], device=mag_warped.device)
            low = torch.where(rows < mag_warped.shape[-2] // 2, 2.0, -2.0)[:, None].expand(-1, mag_warped.shape[-1])
            maps = torch.stack([low, -low])
            return maps.unsqueeze(0).expand(mag_warped.shape[0], -1, -1, -1).to(mag_warped.dtype)

    model = BandNet(SeparateNetConfig(ngf=4, depth=3, k=2, emb_dim=4))
    with torch.no_grad():
        model.query_proj.weight.copy_(torch.tensor([[2.0, -2.0, 0.0, 0.0], [-2.0, 2.0, 0.0, 0.0]]))
        model.query_proj.bias.zero_()
        model.scale.fill_(1.0)
        model.bias.zero_()
    rows = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0.3, 0], [0, 0, 0, 1.0]])
    bank = QueryBank(["low", "high", "low-ish", "hum"], rows)

    def tones(seconds=4.0, low_on=(0.0, None), high_on=(0.0, None), rate=16000):
        """A 200 Hz tone and a 5 kHz tone (0.3 amplitude each), on only in the given spans."""
        t = np.arange(int(seconds * rate)) / rate
        low = 0.3 * np.sin(2 * math.pi * 200 * t) * ((t >= low_on[0]) & (t < (low_on[1] or seconds)))
        high = 0.3 * np.sin(2 * math.pi * 5000 * t) * ((t >= high_on[0]) & (t < (high_on[1] or seconds)))
        return low.astype(np.float32), high.astype(np.float32)

    return SimpleNamespace(model=model.eval(), bank=bank, tones=tones)
