"""Training from an `omnisep embed` cache sees the same queries as embedding on the fly."""

import pytest

from omnisep.data.cache import build_cache
from omnisep.data.manifest import read_manifest
from omnisep.encoders import get_encoder
from omnisep.errors import OmniSepError
from omnisep.training.config import TrainConfig
from omnisep.training.loop import train
from omnisep.data.synthetic import make_corpus


def _config(manifest, out_dir, cache=None, dim=16):
    return TrainConfig.from_dict({
        "out_dir": str(out_dir), "steps": 2, "log_every": 1, "val_every": 2, "checkpoint_every": 2, "device": "cpu",
        "model": {"ngf": 4, "depth": 3, "k": 4},
        "encoder": {"name": "toy", "options": {"dim": dim}},
        "data": {"train_manifest": str(manifest), "segment_samples": 2047, "num_workers": 0, "cache": cache},
        "optim": {"batch_size": 4, "warmup_steps": 1},
    })


def test_cache_and_on_the_fly_embeddings_train_identically(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1)
    build_cache(read_manifest(manifest), get_encoder("toy", dim=16), tmp_path / "cache", modalities=("text", "audio"))
    cached = train(_config(manifest, tmp_path / "a", cache=str(tmp_path / "cache")), log=lambda m: None)
    on_the_fly = train(_config(manifest, tmp_path / "b"), log=lambda m: None)
    assert cached.train_loss == pytest.approx(on_the_fly.train_loss, rel=1e-6)
    assert cached.val_losses == pytest.approx(on_the_fly.val_losses, rel=1e-6)
    assert set(cached.val_losses) == {"text", "audio", "mixup"}

    with pytest.raises(OmniSepError, match="was made with encoder"):
        train(_config(manifest, tmp_path / "c", cache=str(tmp_path / "cache"), dim=32), log=lambda m: None)


def test_ratio_targets_reach_training_and_validation(tmp_path, monkeypatch):
    # The same batches with [loss] target = "ratio": every call of the targets gets it (training and
    # validation), and the losses differ from the binary run's (identical runs agree to 1e-6, above; the
    # synthetic classes barely overlap, so the two targets differ little).
    import omnisep.training.loop as loop

    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1)
    binary = train(_config(manifest, tmp_path / "a"), log=lambda m: None)
    asked = []
    original = loop.batch_loss
    monkeypatch.setattr(loop, "batch_loss", lambda *a: asked.append(a[2]) or original(*a))
    config = _config(manifest, tmp_path / "b")
    config.loss.target = "ratio"
    ratio = train(config, log=lambda m: None)
    assert asked and set(asked) == {"ratio"} and len(asked) > 2  # two steps, then validation batches
    assert ratio.train_loss != pytest.approx(binary.train_loss, rel=1e-5)
    assert set(ratio.val_losses) == set(binary.val_losses)


def test_waveform_loss_trains_and_validates_in_decibels(tmp_path):
    # [loss] target = "waveform": the same run, scored by the thresholded SNR of the masked mixture's iSTFT.
    # Its values are decibels (minus the SNR), bounded by the 30 dB saturation, unlike the BCE's.
    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1)
    config = _config(manifest, tmp_path / "w")
    config.loss.target = "waveform"
    result = train(config, log=lambda m: None)
    assert result.val_losses and all(-31.0 < value < 31.0 for value in result.val_losses.values())
    assert -31.0 < result.train_loss < 31.0
    binary = train(_config(manifest, tmp_path / "b"), log=lambda m: None)
    assert 0 < binary.train_loss < 2 and result.train_loss != pytest.approx(binary.train_loss, rel=1e-3)


def test_negative_queries_train_and_are_validated(tmp_path):
    # loss.negative_weight > 0 (resident pipeline): the run trains on the extra query row and validation
    # gains a "negative" score; a run without it keeps the four plain keys.
    manifest = make_corpus(tmp_path / "corpus", train_per_class=3, val_per_class=1)
    plain = _config(manifest, tmp_path / "p")
    plain.data.pipeline = "resident"
    plain.validate()
    config = _config(manifest, tmp_path / "n")
    config.data.pipeline = "resident"
    config.loss.target = "waveform"
    config.loss.negative_weight = 0.5
    config.validate()
    base = train(plain, log=lambda m: None)
    result = train(config, log=lambda m: None)
    assert "negative" not in base.val_losses
    assert set(result.val_losses) == set(base.val_losses) | {"negative"}
    assert all(-31.0 < value < 31.0 for value in result.val_losses.values())


def test_picture_variants_come_from_a_picture_bank_of_the_queries_dimension(tmp_path):
    # queries.image_bank + image_variant_prob (resident pipeline): the bank's pictures reach the mixer, and
    # a bank embedded for another query space is refused in one sentence that names it.
    import torch

    from omnisep.query_aug import ClassMatcher

    manifest = make_corpus(tmp_path / "corpus", train_per_class=3, val_per_class=1)
    labels = sorted({item.label for item in read_manifest(manifest)})
    for dim, name in ((16, "bank.safetensors"), (8, "other.safetensors")):
        ClassMatcher(labels, [label for label in labels for _ in range(2)], torch.randn(2 * len(labels), dim),
                     [f"p{n}" for n in range(2 * len(labels))], ["emoji"] * (2 * len(labels))).save(tmp_path / name)
    config = _config(manifest, tmp_path / "run")
    config.data.pipeline = "resident"
    config.queries.image_bank, config.queries.image_variant_prob = str(tmp_path / "bank.safetensors"), 0.5
    config.validate()
    lines = []
    train(config, log=lines.append)
    assert f"picture variants: {2 * len(labels)} pictures of {len(labels)} classes, p = 0.5" in lines
    config.queries.image_bank, config.out_dir = str(tmp_path / "other.safetensors"), str(tmp_path / "run2")
    with pytest.raises(OmniSepError, match=r"queries.image_bank .*other.safetensors.* has 8-dimensional entries"):
        train(config, log=lambda m: None)


def test_a_run_distils_from_a_teacher_checkpoint_and_refuses_one_of_another_encoder(tmp_path):
    # loss.teacher: the teacher is loaded frozen and changes the training loss, not the validation loss's
    # definition (validation still scores the ground truth, so runs with and without a teacher compare).
    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1)
    teacher_run = _config(manifest, tmp_path / "teacher")
    teacher_run.steps = teacher_run.val_every = teacher_run.checkpoint_every = 4
    train(teacher_run, log=lambda m: None)
    plain = train(_config(manifest, tmp_path / "plain"), log=lambda m: None)
    config = _config(manifest, tmp_path / "student")
    config.loss.teacher = str(tmp_path / "teacher" / "last")
    config.loss.teacher_weight = 1.0
    logged = []
    student = train(config, log=logged.append)
    assert any(line.startswith("distilling from") for line in logged)
    # at initialisation every logit is near 0, where BCE is log 2 for any target, so the losses agree
    # closely; the gradients do not (sigmoid(l) - target), so the trained weights differ
    from omnisep.states import load_checkpoint

    trained = [load_checkpoint(tmp_path / name / "last").model.state_dict() for name in ("plain", "student")]
    assert max((trained[0][k] - trained[1][k]).abs().max().item() for k in trained[0]
               if trained[0][k].is_floating_point()) > 1e-5
    assert student.train_loss != plain.train_loss
    other = _config(manifest, tmp_path / "other", dim=32)
    other.loss.teacher = str(tmp_path / "teacher" / "last")
    with pytest.raises(OmniSepError, match="loss.teacher"):
        train(other, log=lambda m: None)


def test_an_ensemble_trains_as_one_network_from_its_members(tmp_path):
    # kind "ensemble" in a training config: members written without emb_dim (the encoder sets it), the loss on
    # their averaged logits, every member learning from the warm start.
    import subprocess
    import sys
    from pathlib import Path

    from omnisep.states import load_checkpoint

    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1)
    for seed, name in ((1, "m0"), (2, "m1")):
        member = _config(manifest, tmp_path / name)
        member.seed = seed
        train(member, log=lambda m: None)
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_ensemble.py"
    made = subprocess.run([sys.executable, str(script), str(tmp_path / "pair"), str(tmp_path / "m0" / "last"),
                           str(tmp_path / "m1" / "last"), "--weights", "0.4,0.6"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    joint = _config(manifest, tmp_path / "joint")
    joint.model = {"kind": "ensemble", "weights": [0.4, 0.6], "members": [
        {"kind": "paper", "ngf": 4, "depth": 3, "k": 4, "align_corners": True} for _ in range(2)]}
    joint.init_from = str(tmp_path / "pair")
    logged = []
    train(TrainConfig.from_dict(joint.to_dict()), log=logged.append)
    assert "warm start from" in "\n".join(logged) and "(ensemble network)" in "\n".join(logged)
    before = load_checkpoint(tmp_path / "pair").model.state_dict()
    after = load_checkpoint(tmp_path / "joint" / "last")
    assert after.config["model"]["kind"] == "ensemble" and after.config["model"]["weights"] == [0.4, 0.6]
    state = after.model.state_dict()
    for member in ("members.0.", "members.1."):
        changed = max((state[k] - before[k].float()).abs().max().item() for k in state
                      if k.startswith(member) and state[k].is_floating_point())
        assert changed > 1e-5, member
