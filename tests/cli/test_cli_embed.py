from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch

from omnisep.cli import main
from omnisep.data.cache import EmbeddingCache
from omnisep.encoders.toy import ToyEncoder


def make_manifest(folder, count=5):
    t = np.arange(16000) / 16000
    sf.write(folder / "a.wav", (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps({"id": f"i{k}", "audio": "a.wav", "label": f"sound {k}"}) + "\n" for k in range(count)))
    return path


def test_embed_writes_a_cache_and_resumes(tmp_path, capsys):
    manifest = make_manifest(tmp_path)
    out = tmp_path / "cache"
    args = ["embed", str(manifest), "--encoder", "toy", "-o", str(out), "--modalities", "text,audio", "--shard-size", "2", "--quiet"]
    assert main(args) == 0
    assert "5 items embedded, 0 already cached, 3 new shards" in capsys.readouterr().out
    cache = EmbeddingCache(out)
    assert len(cache) == 5 and cache.modalities == ("text", "audio")
    assert torch.allclose(cache.get("i3")["text"], ToyEncoder().embed_text(["sound 3"])[0])
    assert main(args) == 0
    assert "0 items embedded, 5 already cached, 0 new shards" in capsys.readouterr().out


def test_embed_user_errors_exit_2_with_one_line(tmp_path, capsys):
    manifest = make_manifest(tmp_path)
    assert main(["embed", str(tmp_path / "missing.jsonl"), "--encoder", "toy", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omnisep: error: Manifest") and "missing.jsonl" in err and "Traceback" not in err
    assert main(["embed", str(manifest), "--encoder", "toy", "-o", str(tmp_path / "c"), "--modalities", "smell"]) == 2
    assert "Unknown modality smell" in capsys.readouterr().err
    assert main(["embed", str(manifest), "--encoder", "toy", "-o", str(tmp_path / "c"), "--imagebind-weights", str(manifest)]) == 2
    assert "--imagebind-weights is for --encoder imagebind" in capsys.readouterr().err
