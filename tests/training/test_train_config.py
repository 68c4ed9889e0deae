import json

import pytest

from omnisep.cli import main
from omnisep.errors import OmniSepError
from omnisep.training.config import TrainConfig, load_config


def test_defaults_are_the_papers():
    config = TrainConfig()
    assert (config.seed, config.steps, config.val_every, config.precision) == (1234, 200_000, 10_000, "fp32")
    o = config.optim
    assert (o.lr, o.weight_decay, o.betas, o.eps, o.grad_clip, o.batch_size) == (1e-3, 0.0, [0.9, 0.999], 1e-8, 1.0, 128)
    assert (o.warmup_steps, o.decay_steps, o.final_lr_scale) == (5000, 100_000, 0.1)
    assert (config.data.num_sources, config.data.segment_samples) == (2, 65535)
    model = config.model_config(emb_dim=1024)
    assert (model.ngf, model.depth, model.k, model.align_corners) == (64, 7, 32, True)
    assert config.queries.modality_mode == "mixup" and config.queries.modalities == ["text", "image", "audio"]


def test_toml_with_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('out_dir = "runs/a"\n[data]\ntrain_manifest = "m.csv"\n[optim]\nlr = 2e-3\n')
    config = load_config(
        path,
        ["optim.lr=3e-4", "optim.batch_size=8", 'queries.modalities=["text", "audio"]', "out_dir=runs/b",
         "encoder.options={dim = 32}", "optim.warmup_steps=1"],
    )
    assert config.optim.lr == 3e-4 and config.optim.batch_size == 8
    assert config.queries.modalities == ["text", "audio"]
    assert config.out_dir == "runs/b"  # a bare word is a string
    assert config.encoder.options == {"dim": 32}
    assert config.data.train_manifest == "m.csv"


def test_json_config_and_ints_accepted_for_floats(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": {"train_manifest": "m.csv"}, "optim": {"lr": 1}}))
    assert load_config(path).optim.lr == 1.0


@pytest.mark.parametrize(
    "text, message",
    [
        ('[data]\ntrain_manifest = "m"\n[optim]\nlearning_rate = 1\n', "unknown key optim.learning_rate"),
        ('[data]\ntrain_manifest = "m"\n[optim]\nbatch_size = "big"\n', "optim.batch_size must be int, got str"),
        ('[data]\ntrain_manifest = "m"\nsegment_samples = 16000\n', "gives 63 STFT frames"),
        ("steps = 3\n", "data.train_manifest is required"),
        ('precision = "fp8"\n[data]\ntrain_manifest = "m"\n', "precision must be one of"),
        ('[data]\ntrain_manifest = "m"\n[queries]\nmodality_mode = "video"\n', "modality_mode must be one of"),
        ('[data]\ntrain_manifest = "m"\n[queries]\nmodalities = ["smell"]\n', "queries.modalities must be"),
        ('[data]\ntrain_manifest = "m"\npipeline = "resident"\n[queries]\ntext_variant_prob = 0.3\n', "needs queries.text_bank"),
        ('[data]\ntrain_manifest = "m"\n[queries]\ntext_bank = "b"\ntext_variant_prob = 0.3\n', "resident"),
        ('[data]\ntrain_manifest = "m"\n[queries]\ntext_variant_prob = 1.5\n', r"lie in \[0, 1\]"),
        ('[data]\ntrain_manifest = "m"\npipeline = "resident"\n[queries]\nimage_variant_prob = 0.3\n', "needs queries.image_bank"),
        ('[data]\ntrain_manifest = "m"\n[queries]\nimage_bank = "b"\nimage_variant_prob = 0.3\n', "resident"),
        ('[data]\ntrain_manifest = "m"\n[queries]\nimage_variant_prob = -0.5\n', r"image_variant_prob must lie in \[0, 1\]"),
        ('[data]\ntrain_manifest = "m"\n[loss]\ntarget = "irm"\n', "loss.target must be one of binary, ratio, waveform"),
        ('[data]\ntrain_manifest = "m"\npipeline = "resident"\n[loss]\nnegative_weight = -1\n', "negative_weight must be 0 or more"),
        ('[data]\ntrain_manifest = "m"\npipeline = "resident"\n[loss]\nnegative_alpha = [3, 1]\n', "negative_alpha must be two numbers"),
        ('[data]\ntrain_manifest = "m"\n[loss]\nnegative_weight = 0.5\n', "negative_weight > 0 works with data.pipeline"),
        ('[data]\ntrain_manifest = "m"\n[loss]\ntarget = "waveform"\nteacher = "t"\n', "loss.teacher needs a mask target"),
        ('[data]\ntrain_manifest = "m"\n[loss]\nteacher = "t"\nteacher_weight = 1.5\n', r"teacher_weight must lie in \[0, 1\]"),
        ("data = 3\n", "section 'data' must be a table"),
        ("[data\n", "cannot be parsed"),
    ],
)
def test_config_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(OmniSepError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[data]\ntrain_manifest = "m.csv"\n')
    assert main(["train", str(path), "--set", "optim.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key optim.nope" in err and "Traceback" not in err
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert main(["train", str(path), "--set", "junk"]) == 2
