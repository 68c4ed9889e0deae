"""Kind "ensemble": the weighted mean of its members' logits, through checkpoints, chunking and the
script that assembles one from trained checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omnisep import spectral
from omnisep.apply import ChunkedSeparator
from omnisep.errors import OmniSepError
from omnisep.models import (
    EnsembleConfig,
    EnsembleNet,
    FilmNet,
    FilmNetConfig,
    SeparateNet,
    SeparateNetConfig,
    build,
    config_from_dict,
    config_to_dict,
    signal_path,
)
from omnisep.pretrained import describe_model
from omnisep.states import load_checkpoint, save_checkpoint

PAPER = SeparateNetConfig(ngf=2, depth=2, k=3, emb_dim=6, align_corners=False)
FILM = FilmNetConfig(ngf=4, depth=3, k=4, emb_dim=6, film_hidden=8)
IDENTITY = {"name": "toy", "version": "1", "weights_hash": "abc123", "dim": 6}
REPO = Path(__file__).resolve().parents[2]


def members(seed=0):
    torch.manual_seed(seed)
    paper, film = SeparateNet(PAPER).eval(), FilmNet(FILM).eval()
    with torch.no_grad():  # give the film network a real modulation so both members matter
        for layer in [film.bottleneck_film, *film.decoder_film]:
            layer.out.weight.normal_(0, 0.3)
        paper.query_proj.weight.normal_(0, 0.5)
    return paper, film


def ensemble_of(paper, film, weights=()):
    net = EnsembleNet(EnsembleConfig(members=(PAPER, FILM), weights=weights, emb_dim=6)).eval()
    net.members[0].load_state_dict(paper.state_dict())
    net.members[1].load_state_dict(film.state_dict())
    return net


@pytest.mark.parametrize("weights", [(), (0.25, 0.75)])
def test_logits_are_the_weighted_mean_of_the_members(weights):
    paper, film = members()
    net = ensemble_of(paper, film, weights)
    mag = spectral.warp(torch.rand(2, 1, 513, 16) + spectral.MAG_EPS)
    queries = torch.randn(2, 3, 6)
    share = weights or (0.5, 0.5)
    with torch.no_grad():
        expected = share[0] * paper(mag, queries) + share[1] * film(mag, queries)
        got = net(mag, queries)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, paper(mag, queries).detach(), atol=1e-3)
    # chunking respects every member: the coarsest time grid, the widest context
    assert net.time_multiple == 8 and net.context_frames == max(paper.context_frames, film.context_frames)


def test_config_round_trip_and_refusals():
    config = EnsembleConfig(members=(config_to_dict(PAPER), config_to_dict(FILM)), emb_dim=6)
    stored = config_to_dict(config)
    assert stored["kind"] == "ensemble" and [m["kind"] for m in stored["members"]] == ["paper", "film"]
    assert json.loads(json.dumps(stored)) == stored
    assert config_from_dict(stored, strict=True) == config and config.weights == (0.5, 0.5)
    assert type(build(stored).members[1]) is FilmNet
    with pytest.raises(OmniSepError, match="at least two members"):
        EnsembleConfig(members=(PAPER,), emb_dim=6)
    with pytest.raises(OmniSepError, match="2 weights for 3"):
        EnsembleConfig(members=(PAPER, FILM, PAPER), weights=(0.5, 0.5), emb_dim=6)
    with pytest.raises(OmniSepError, match="sum to 1"):
        EnsembleConfig(members=(PAPER, FILM), weights=(0.5, 0.6), emb_dim=6)
    with pytest.raises(OmniSepError, match="cannot be ensembles"):
        EnsembleConfig(members=(config, PAPER), emb_dim=6)
    with pytest.raises(OmniSepError, match="missing key"):  # a checkpoint's member must not fall back to defaults
        EnsembleConfig(members=({"kind": "paper", "ngf": 2}, FILM), emb_dim=6)


def test_checkpoint_round_trip_and_chunked_separation_equals_one_piece(tmp_path):
    net = ensemble_of(*members())
    save_checkpoint(tmp_path / "ens", net, IDENTITY)
    loaded = load_checkpoint(tmp_path / "ens").model
    assert type(loaded) is EnsembleNet
    wave = torch.from_numpy((0.1 * np.random.default_rng(1).standard_normal(24000)).astype(np.float32))
    queries = torch.randn(2, 6)
    with torch.no_grad():
        one_piece = signal_path.separate(loaded, wave[None], queries[None])[0]
        original = signal_path.separate(net, wave[None], queries[None])[0]
    np.testing.assert_allclose(one_piece.numpy(), original.numpy(), atol=1e-6)
    engine = ChunkedSeparator(loaded, queries, chunk_seconds=0.5, overlap=0.2)
    blocks = np.split(wave.numpy()[None], [3000, 11000], axis=1)
    streamed = np.concatenate([engine.push(block) for block in blocks] + [engine.finish()], axis=-1)
    np.testing.assert_allclose(streamed[:, 0], one_piece.numpy(), atol=1e-5)


def test_make_ensemble_script_joins_two_checkpoints_and_refuses_foreign_encoders(tmp_path):
    paper, film = members(seed=3)
    save_checkpoint(tmp_path / "a", paper, IDENTITY, inference={"negative": {"mode": "logit", "alpha": 2.0}})
    save_checkpoint(tmp_path / "b", film, IDENTITY)
    script = [sys.executable, str(REPO / "scripts" / "make_ensemble.py")]
    done = subprocess.run([*script, str(tmp_path / "ens"), str(tmp_path / "a"), str(tmp_path / "b"),
                           "--weights", "0.75,0.25"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = load_checkpoint(tmp_path / "ens")
    assert loaded.config["inference"] == {"negative": {"mode": "logit", "alpha": 2.0}}
    listed = describe_model(tmp_path / "ens")
    assert (listed["kind"], listed["ngf"], listed["error"]) == ("ensemble of paper + film", "2+4", None)
    mag = spectral.warp(torch.rand(1, 1, 513, 16) + spectral.MAG_EPS)
    queries = torch.randn(1, 2, 6)
    with torch.no_grad():  # members are stored as float16, as the bundled models are
        half = [load_checkpoint(tmp_path / name).model for name in ("a", "b")]
        for model in half:
            model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                   for k, v in model.state_dict().items()})
        expected = 0.75 * half[0](mag, queries) + 0.25 * half[1](mag, queries)
        torch.testing.assert_close(loaded.model(mag, queries), expected, atol=1e-4, rtol=1e-4)

    save_checkpoint(tmp_path / "c", film, {**IDENTITY, "weights_hash": "other"})
    refused = subprocess.run([*script, str(tmp_path / "bad"), str(tmp_path / "a"), str(tmp_path / "c")],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "different query encoders" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "bad").exists()
