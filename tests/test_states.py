import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from omnisep.errors import OmniSepError
from omnisep.models import SeparateNet, SeparateNetConfig
from omnisep.queries import QueryBank
from omnisep.states import (
    blend_weights,
    check_encoder,
    flatten_state,
    load_checkpoint,
    load_state_file,
    read_config,
    save_checkpoint,
    save_state_file,
    unflatten_state,
)

CONFIG = SeparateNetConfig(ngf=2, depth=2, k=3, emb_dim=4)
IDENTITY = {"name": "toy", "version": "1", "weights_hash": "abc123", "dim": 4}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = SeparateNet(CONFIG)
    with torch.no_grad():  # make the running statistics non-default so the round trip is meaningful
        model.input_norm.running_mean.fill_(0.25)
    return model


def saved(tmp_path, **kwargs):
    path = tmp_path / "ckpt"
    save_checkpoint(path, kwargs.pop("model", tiny_model()), IDENTITY, **kwargs)
    return path


def test_round_trip_reproduces_model_bank_and_extras(tmp_path):
    model = tiny_model()
    bank = QueryBank(["dog", "violin"], torch.tensor([[1.0, 0, 0, 0], [0, 3.0, 0, 0]]))
    path = saved(tmp_path, model=model, bank=bank, training={"step": 12}, extra_tensors={"ema.scale": torch.ones(3)})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "omnisep-checkpoint" and config["format_version"] == 1
    assert config["model"] == {"kind": "paper", **CONFIG.to_dict()} and config["encoder"] == IDENTITY
    assert config["query_bank"] == {"labels": ["dog", "violin"]} and config["training"] == {"step": 12}
    stored = load_file(path / "model.safetensors")
    assert "query_bank.embeddings" in stored and "extra.ema.scale" in stored

    loaded = load_checkpoint(path)
    assert not loaded.model.training
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value, rtol=0, atol=0)
    assert loaded.bank.labels == ["dog", "violin"]
    torch.testing.assert_close(loaded.bank.embeddings[1], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(loaded.extra_tensors["ema.scale"], torch.ones(3))
    model.eval()
    mag, queries = torch.rand(1, 1, 256, 4) + 0.1, torch.randn(1, 2, 4)
    torch.testing.assert_close(loaded.model(mag, queries), model(mag, queries), rtol=0, atol=0)


def test_saving_again_replaces_the_checkpoint_and_leaves_no_temporaries(tmp_path):
    saved(tmp_path, training={"step": 1})
    saved(tmp_path, model=tiny_model(seed=1), training={"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert read_config(tmp_path / "ckpt")["training"] == {"step": 2}
    assert load_checkpoint(tmp_path / "ckpt").bank is None


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    foreign = tmp_path / "ckpt"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OmniSepError, match="not an omnisep checkpoint"):
        save_checkpoint(foreign, tiny_model(), IDENTITY)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(OmniSepError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "nowhere")
    path = saved(tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(OmniSepError, match="model.safetensors' is missing"):
        load_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(OmniSepError, match="config.json' is missing"):
        load_checkpoint(path)


def test_foreign_or_broken_json(tmp_path):
    path = saved(tmp_path)
    (path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(OmniSepError, match="not an omnisep checkpoint config"):
        load_checkpoint(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(OmniSepError, match="not readable JSON"):
        load_checkpoint(path)


def test_newer_format_version_is_refused(tmp_path):
    path = saved(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["format_version"] = 2
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(OmniSepError, match="format version 2"):
        read_config(path)


def test_truncated_weights_are_reported_as_damaged(tmp_path):
    path = saved(tmp_path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(OmniSepError, match="damaged"):
        load_checkpoint(path)


def test_missing_unexpected_and_misshaped_tensors(tmp_path):
    path = saved(tmp_path)
    weights = path / "model.safetensors"
    tensors = load_file(weights)
    scale = tensors.pop("scale")
    save_file({**tensors, "stray": torch.zeros(1)}, weights)
    with pytest.raises(OmniSepError, match="missing 'scale'; unexpected 'stray'"):
        load_checkpoint(path)
    save_file({**tensors, "scale": torch.cat([scale, scale])}, weights)
    with pytest.raises(OmniSepError, match=r"'scale' has shape \(6,\)"):
        load_checkpoint(path)


def test_unknown_model_key_names_the_file(tmp_path):
    path = saved(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["model"]["dropout"] = 0.5
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(OmniSepError, match="config.json.*unknown key.*'dropout'"):
        load_checkpoint(path)


def test_check_encoder():
    config = {"encoder": IDENTITY}
    check_encoder(config, dict(IDENTITY))
    with pytest.raises(OmniSepError, match="weights_hash 'other' vs 'abc123'"):
        check_encoder(config, {**IDENTITY, "weights_hash": "other"})


def assert_same_state(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    else:
        assert a == b


def adam_after_steps(model, steps, optimizer=None):
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    for step in range(steps):
        optimizer.zero_grad()
        model(torch.full((2, 3), float(step + 1))).square().sum().backward()
        optimizer.step()
    return optimizer


def test_adam_state_round_trips_exactly_through_a_state_file(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = adam_after_steps(model, 2)
    state = {"optimizer": optimizer.state_dict(), "step": 2, "rng": torch.get_rng_state(), "np": np.arange(3.0)}
    path = save_state_file(tmp_path / "resume.safetensors", state)
    assert [p.name for p in tmp_path.iterdir()] == ["resume.safetensors"]
    loaded = load_state_file(path)
    assert_same_state(loaded, state)
    assert isinstance(loaded["optimizer"]["param_groups"][0]["betas"], tuple)
    assert list(loaded["optimizer"]["state"]) == [0, 1]

    # Resuming from the file continues exactly like the uninterrupted run.
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    resumed = torch.optim.Adam(twin.parameters(), lr=1e-2, betas=(0.9, 0.99))
    resumed.load_state_dict(loaded["optimizer"])
    adam_after_steps(model, 1, optimizer)
    adam_after_steps(twin, 1, resumed)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_flatten_state_tags_keep_types():
    state = {1: (2, [3.5, None, "x"]), "t": torch.arange(3), "flag": True}
    tensors, meta = flatten_state(state)
    assert list(tensors) == ["t0"]
    json.dumps(meta)
    assert_same_state(unflatten_state(tensors, json.loads(json.dumps(meta))), state)
    with pytest.raises(TypeError):
        flatten_state({"f": object()})


def test_state_file_errors(tmp_path):
    with pytest.raises(OmniSepError, match="missing"):
        load_state_file(tmp_path / "none.safetensors")
    path = saved(tmp_path)
    with pytest.raises(OmniSepError, match="not an omnisep training state"):
        load_state_file(path / "model.safetensors")


def test_recorded_verification_settings_are_checked():
    from omnisep.states import scan_settings, scan_threshold

    config = {"inference": {"scan": {"threshold": 0.6, "verify": {"top": 6, "power": 2, "threshold": 0.3}}}}
    assert scan_settings(config, "m")["verify"] == {"top": 6, "power": 2.0, "threshold": 0.3}
    assert scan_threshold(config, "m", 0.4) == 0.3
    assert scan_threshold(config, "m", 0.4, verified=False) == 0.6
    assert scan_threshold({}, "m", 0.4) == 0.4
    tagged = {"listen": False, "tagger_power": 1, "threshold": 0.2}
    assert scan_settings({"inference": {"scan": {"verify": tagged}}}, "m")["verify"] == {"listen": False, "tagger_power": 1.0, "threshold": 0.2}
    for bad in ({"top": 2.5}, {"top": 0}, {"power": True}, {"threshold": 1.5}, {"listen": 1}, {"listen": False},
                {"tagger_power": 0}):
        with pytest.raises(OmniSepError, match="inference.scan.verify"):
            scan_settings({"inference": {"scan": {"verify": bad}}}, "m")


def test_blend_weights_walks_the_line_between_two_models():
    base, tuned = tiny_model(0).state_dict(), tiny_model(1).state_dict()
    tuned["input_norm.num_batches_tracked"] = torch.tensor(7)
    assert all(torch.equal(blend_weights(base, tuned, 0.0)[k].to(v.dtype), v) for k, v in base.items()
               if v.is_floating_point())
    halfway = blend_weights(base, tuned, 0.5)
    name = next(k for k, v in base.items() if v.is_floating_point() and not torch.equal(v, tuned[k]))
    assert torch.allclose(halfway[name], (base[name] + tuned[name]) / 2)
    assert not torch.allclose(halfway[name], base[name])
    assert halfway["input_norm.num_batches_tracked"].item() == 7  # counters are the fine-tune's
    model = SeparateNet(CONFIG)
    model.load_state_dict(halfway)  # a blend loads into the same architecture


def test_blend_weights_refuses_other_architectures_and_weights():
    base = tiny_model(0).state_dict()
    other = SeparateNet(SeparateNetConfig(ngf=3, depth=2, k=3, emb_dim=4)).state_dict()
    with pytest.raises(OmniSepError, match="not one architecture"):
        blend_weights(base, other, 0.5)
    with pytest.raises(OmniSepError, match="different tensors"):
        blend_weights(base, {k: v for k, v in base.items() if k != next(iter(base))}, 0.5)
    with pytest.raises(OmniSepError, match=r"\[0, 1\]"):
        blend_weights(base, base, 1.5)


def test_the_second_look_gate_is_read_and_checked():
    from omnisep.states import second_look_gate

    assert second_look_gate({}, "m") is None
    assert second_look_gate({"inference": {"contrast": {"alpha": 0.5}}}, "m") is None
    assert second_look_gate({"inference": {"second_look": {"below_db": -14}}}, "m") == -14.0
    for bad in ({"below_db": 3}, {"below_db": "loud"}, {"below_db": float("nan")}, {"below_db": -14, "extra": 1}, [-14]):
        with pytest.raises(OmniSepError, match="model 'm': inference.second_look"):
            second_look_gate({"inference": {"second_look": bad}}, "m")
