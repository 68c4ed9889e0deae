"""`omnisep evaluate-auto-negative` and `omnisep evaluate-presence`, run then report, on the tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnisep.cli import main
from omnisep.evaluation import auto_negative, presence

TONES = {"dog barking": 300.0, "violin": 1200.0, "speech": 3000.0}  # the tiny checkpoint's labels


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory):
    """Three one-second tones, one per label, and two two-source mixtures of them."""
    folder = tmp_path_factory.mktemp("tools")
    t = np.arange(16000) / 16000
    rows = []
    for label, tone in TONES.items():
        item = label.split()[0]
        sf.write(folder / f"{item}.wav", (0.4 * np.sin(2 * np.pi * tone * t)).astype(np.float32), 16000)
        rows.append({"id": item, "audio": f"{item}.wav", "label": label, "split": "test"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = [("dog", "violin"), ("speech", "dog")]
    (folder / "mixtures.jsonl").write_text(
        "".join(json.dumps({"id": f"m{i}", "target": a, "interferers": [b], "seed": i}) + "\n" for i, (a, b) in enumerate(pairs))
    )
    return folder / "mixtures.jsonl"


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_auto_negative_run_then_report(tiny_checkpoint, mixtures, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate-auto-negative", "run", tiny_checkpoint, mixtures, "--modes", "text",
                         "--out", tmp_path / "runs" / "val.json", "--quiet")
    assert code == 0, err
    assert "2 mixtures" in out and "best setting: auto/mixture/" in out
    data = json.loads((tmp_path / "runs" / "val.json").read_text())
    assert data["count"] == 2 and len(data["scores"]["text"]["plain"]) == 2
    assert data["summary"] == auto_negative.summarize_run(data)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["val.json"]  # no partial file left

    report = tmp_path / "report"
    code, out, err = run(capsys, "evaluate-auto-negative", "report", "--validation", tmp_path / "runs" / "val.json",
                         "--test", tmp_path / "runs" / "val.json", "--out", report)
    assert code == 0, err
    summary = json.loads((report / "summary.json").read_text())
    assert summary["chosen"] == auto_negative.choose_defaults(data["summary"])
    assert out.strip() == (report / "results.md").read_text().strip()
    assert "| text |" in out
    # At the model's strength only: the choice is made among the alpha-0.5 settings.
    code, out, err = run(capsys, "evaluate-auto-negative", "report", "--validation", tmp_path / "runs" / "val.json",
                         "--test", tmp_path / "runs" / "val.json", "--alpha", "0.5", "--out", report)
    assert code == 0, err
    chosen = json.loads((report / "summary.json").read_text())["chosen"]
    assert chosen.endswith("/a0.5") and chosen == auto_negative.choose_defaults(data["summary"], alpha=0.5)
    # The model's own setting, reported as such beside the best on validation.
    code, out, err = run(capsys, "evaluate-auto-negative", "report", "--validation", tmp_path / "runs" / "val.json",
                         "--test", tmp_path / "runs" / "val.json", "--setting", "auto/mixture/n2/sim0.7/a0.25", "--out", report)
    assert code == 0, err
    summary = json.loads((report / "summary.json").read_text())
    assert summary["chosen"] == "auto/mixture/n2/sim0.7/a0.25"
    assert summary["best_on_validation"] == auto_negative.choose_defaults(data["summary"])
    assert "automatic setting: `auto/mixture/n2/sim0.7/a0.25`" in out
    code, _, err = run(capsys, "evaluate-auto-negative", "report", "--validation", tmp_path / "runs" / "val.json",
                       "--test", tmp_path / "runs" / "val.json", "--setting", "auto/nothing/n1/sim1/a1", "--out", report)
    assert code == 2 and "no setting 'auto/nothing/n1/sim1/a1'" in err


def test_auto_negative_from_the_residuals_embedding(tiny_checkpoint, mixtures, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate-auto-negative", "run", tiny_checkpoint, mixtures, "--modes", "text",
                         "--sources", "residual-label,residual-audio,mixture+residual", "--alphas", "0.5",
                         "--out", tmp_path / "val.json", "--quiet")
    assert code == 0, err
    data = json.loads((tmp_path / "val.json").read_text())
    keys = set(data["scores"]["text"])
    # The residual's own embedding is one setting per alpha; its nearest labels sweep count and cut-off.
    assert {k for k in keys if k.startswith("auto/residual-audio/")} == {"auto/residual-audio/n1/sim1.01/a0.5"}
    assert len({k for k in keys if k.startswith("auto/residual-label/")}) == 9
    stats = data["choices"]["text"]["auto/residual-label/n1/sim1.01"]
    assert stats["n"] == 2 and stats["own"] == 0  # never the query's own label
    # The scan's presence plus the residual's closeness sweeps the same grid, never the own label either.
    assert len({k for k in keys if k.startswith("auto/mixture+residual/")}) == 9
    stats = data["choices"]["text"]["auto/mixture+residual/n1/sim1.01"]
    assert stats["n"] == 2 and stats["own"] == 0

    # A stride samples every other mixture of the list; the report says which were scored.
    code, _, err = run(capsys, "evaluate-auto-negative", "run", tiny_checkpoint, mixtures, "--modes", "text",
                       "--sources", "residual-label,residual-audio,mixture+residual", "--alphas", "0.5", "--every", "2",
                       "--out", tmp_path / "every.json", "--quiet")
    assert code == 0, err
    strided = json.loads((tmp_path / "every.json").read_text())
    assert strided["count"] == 1 and strided["every"] == 2 and len(strided["scores"]["text"]["plain"]) == 1
    assert strided["scores"]["text"]["plain"] == data["scores"]["text"]["plain"][:1]  # mixture 0, scored as before
    code, out, err = run(capsys, "evaluate-auto-negative", "report", "--validation", tmp_path / "every.json",
                         "--test", tmp_path / "val.json", "--out", tmp_path / "report")
    assert code == 0, err
    assert "validation {'text': '1, every 2nd'}, test {'text': 'the first 2'}" in out

    code, _, err = run(capsys, "evaluate-auto-negative", "run", tiny_checkpoint, mixtures, "--modes", "text",
                       "--sources", "residue", "--out", tmp_path / "x.json", "--quiet")
    assert code == 2 and "Unknown automatic-negative source(s) ['residue']" in err
    # The tagger sources need a model whose scan records the sound tagger; the tiny one records none.
    code, _, err = run(capsys, "evaluate-auto-negative", "run", tiny_checkpoint, mixtures, "--modes", "text",
                       "--sources", "mixture*residual-tagger", "--out", tmp_path / "y.json", "--quiet")
    assert code == 2 and "records no sound tagger, which the sources residual-tagger, mixture*residual-tagger need" in err
    assert not (tmp_path / "y.json").exists()


def test_auto_negative_without_cache_needs_text_queries(tiny_checkpoint, mixtures, tmp_path, capsys):
    code, _, err = run(capsys, "evaluate-auto-negative", "run", tiny_checkpoint, mixtures, "--modes", "image",
                       "--out", tmp_path / "x.json", "--quiet")
    assert code == 2
    assert err.strip() == "omnisep: error: Image, audio and composed queries need the embedding cache (--cache)."
    assert not (tmp_path / "x.json").exists()


def test_presence_run_then_report(tiny_checkpoint, mixtures, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate-presence", "run", tiny_checkpoint, mixtures, "--out", tmp_path / "scans.npz",
                         "--quiet", "--limit", "2")
    assert code == 0, err
    data = presence.load(tmp_path / "scans.npz")
    assert data["presence"].shape == (2, 3) and data["truth_clip"].sum() == 4
    assert json.loads(out) == presence.score(data, presence.best_threshold(data))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scans.npz"]

    code, out, err = run(capsys, "evaluate-presence", "report", tmp_path / "scans.npz", tmp_path / "scans.npz",
                         "--out", tmp_path / "report")
    assert code == 0, err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["threshold"] == presence.best_threshold(data)
    assert "| validation (2) | clip |" in out and "| test (2) | frame |" in out
    assert Image.open(tmp_path / "report" / "presence_curves.png").size[0] > 300

    # A stride scans every other mixture (the first of the two here), and the report says so.
    code, out, err = run(capsys, "evaluate-presence", "run", tiny_checkpoint, mixtures, "--out", tmp_path / "every.npz",
                         "--quiet", "--every", "2")
    assert code == 0, err
    strided = presence.load(tmp_path / "every.npz")
    assert strided["presence"].shape == (1, 3) and int(strided["every"]) == 2
    np.testing.assert_allclose(strided["presence"][0], data["presence"][0], rtol=1e-5, atol=1e-7)
    assert strided["truth_clip"][0].tolist() == data["truth_clip"][0].tolist()
    code, out, err = run(capsys, "evaluate-presence", "report", tmp_path / "every.npz", tmp_path / "scans.npz",
                         "--out", tmp_path / "report-every")
    assert code == 0, err
    assert "| validation (1, every 2nd) | clip |" in out and "| test (2) | clip |" in out


class _KnownPictures:
    """A stand-in for auto_negative.PictureSnap: recognises each picture by the label in its file name,
    except the ones listed as unknown (left as the picture's own embedding, as the API does where the picture
    calibration gives ``snap-known``)."""

    def __init__(self, unknown=()):
        self.unknown, self.heads, self.calibration = set(unknown), "stub", "stub"

    def snap(self, query, picture, bank):
        label = next(label for label in bank.labels if label.split()[0] in str(picture))
        if label in self.unknown:
            return query, None
        return bank.embeddings[bank.labels.index(label)].to(query.dtype), label


def test_snapped_picture_queries_are_the_label_rows_unless_unknown(tiny_checkpoint, mixtures, tmp_path):
    # Mode image-snapped: the picture as the API gives it. Snapped to the right label, the query is that
    # label's bank row, so it scores exactly as the text query; a picture the matcher does not know keeps its
    # own embedding and scores as the image mode.
    from omnisep.data.cache import build_cache
    from omnisep.data.manifest import read_manifest
    from omnisep.encoders import get_encoder

    folder = mixtures.parent
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    for n, row in enumerate(rows):
        Image.fromarray(np.full((32, 32, 3), 60 * n + 20, np.uint8)).save(tmp_path / f"{row['id']}.png")
        row["image"] = str(tmp_path / f"{row['id']}.png")
        row["audio"] = str(folder / row["audio"])
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_cache(read_manifest(manifest), get_encoder("toy"), tmp_path / "cache", modalities=("text", "image"))
    common = dict(manifest=manifest, cache=tmp_path / "cache", alphas=(1.0,), counts=(1,), similarities=(0.55,),
                  progress=False, controls=False)
    data = auto_negative.run(tiny_checkpoint, mixtures, modes=("text", "image", "image-snapped"),
                             pictures=_KnownPictures(unknown={"speech"}), **common)
    text, image, snapped = (data["scores"][mode]["plain"] for mode in ("text", "image", "image-snapped"))
    # (the tiny checkpoint is random, so the queries' scores differ little: compared exactly)
    assert snapped[0] == text[0] and snapped[0] != image[0]  # dog: snapped
    assert snapped[1] == image[1] and snapped[1] != text[1]  # speech: unknown
    stats = data["choices"]["image-snapped"]["picture Query-Aug"]
    assert stats == {"n": 2, "hit": 1, "none": 1, "own": 0}
    assert data["pictures"] == {"heads": "stub", "calibration": "stub"}
    auto_negative.save_run(data, tmp_path / "snap.json")
    text = auto_negative.write_report([tmp_path / "snap.json"], [tmp_path / "snap.json"], tmp_path / "report")
    assert "| image-snapped |" in text
    assert "snapped to their own label 1 of 2 times, to another label 0, left unsnapped 1 (recogniser: `stub`)." in text
    with pytest.raises(Exception, match=r"Unknown query mode\(s\) \['picture'\]"):
        auto_negative.run(tiny_checkpoint, mixtures, modes=("picture",), **common)
