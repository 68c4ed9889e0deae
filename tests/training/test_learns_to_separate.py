"""End to end: a tiny model trained for a short while on synthetic two-source mixtures
separates held-out mixtures far better than doing nothing."""

import numpy as np
import torch
import torch.nn.functional as F

from omnisep.data.manifest import read_manifest
from omnisep.data.mixing import MixtureDataset, QueryTable
from omnisep.encoders import get_encoder
from omnisep.models import signal_path
from omnisep.states import load_checkpoint
from omnisep.training.config import TrainConfig
from omnisep.training.loop import train
from omnisep.data.synthetic import make_corpus


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return 10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2))


def test_tiny_model_improves_sdr_on_held_out_mixtures(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", train_per_class=6, val_per_class=1, test_per_class=3)
    config = TrainConfig.from_dict({
        "out_dir": str(tmp_path / "run"), "steps": 150, "log_every": 50, "val_every": 150, "checkpoint_every": 150,
        "device": "cpu",
        "model": {"ngf": 8, "depth": 4, "k": 8},
        "encoder": {"name": "toy"},
        "data": {"train_manifest": str(manifest), "segment_samples": 4095, "num_workers": 0},
        "optim": {"batch_size": 16, "warmup_steps": 10, "lr": 3e-3},
        "queries": {"modality_mode": "mixup", "modalities": ["text", "audio"]},
    })
    result = train(config, log=lambda m: None)
    assert result.step == 150

    checkpoint = load_checkpoint(tmp_path / "run" / "best")
    encoder = get_encoder("toy")
    test_items = [item for item in read_manifest(manifest) if item.split == "test"]
    # held-out clips, longer than the training segments: 64 frames
    dataset = MixtureDataset(test_items, QueryTable(test_items, encoder=encoder), training=False, segment_samples=16383)
    improvements = []
    for index in range(len(dataset)):
        example = dataset[index]
        text_queries = F.normalize(example["embeddings"][:, 0], dim=-1)
        with torch.no_grad():
            estimates = signal_path.separate(checkpoint.model, example["mixture"][None], text_queries[None])[0]
        for reference, estimate in zip(example["sources"].numpy(), estimates.numpy()):
            improvements.append(sdr(reference, estimate) - sdr(reference, example["mixture"].numpy()))
    # Doing nothing scores 0 dB. Measured with this config: mean 10.9 dB (median 11.4);
    # with seeds 1, 2, 3 instead of 1234: mean 9.5, 5.8, 6.4 dB (median 7.5, 5.6, 5.2).
    assert np.mean(improvements) > 4.0, improvements
    assert np.median(improvements) > 3.0, improvements
