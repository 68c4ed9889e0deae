import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image

from omnisep.encoders.toy import ToyEncoder
from omnisep.errors import OmniSepError
from omnisep.evaluation.metrics import SCORED_LENGTH
from omnisep.data.mixtures import load_test_set
from omnisep.evaluation.protocol import EvaluationConfig, QuerySpec, evaluate
from omnisep.evaluation.protocol.pool import score_job
from omnisep.evaluation.protocol.queries import QueryBuilder
from omnisep.evaluation.reports import write_evaluation_reports
from omnisep.models import SeparateNet, SeparateNetConfig
from omnisep.queries import QueryBank
from omnisep.states import save_checkpoint

RATE = 16000
CLASSES = {"dog barking": 300.0, "playing violin": 1200.0, "church bell ringing": 3000.0}
DIM = 64
SCORED = 8192


def _write_item(folder, item_id, tone, colour, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE  # 1 s clips: the dataset tiles them to 65,535 samples
    audio = 0.4 * np.sin(2 * np.pi * tone * (1 + 0.01 * seed) * t) + 0.01 * rng.standard_normal(RATE)
    sf.write(folder / f"{item_id}.wav", audio.astype(np.float32), RATE)
    Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(folder / f"{item_id}.png")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rows = []
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    seed = 0
    for (label, tone), colour in zip(CLASSES.items(), colours):
        for split in ("train", "train", "test"):
            item_id = f"{label.split()[0]}-{split}-{seed}"
            _write_item(folder, item_id, tone, colour, seed)
            rows.append({"id": item_id, "audio": f"{item_id}.wav", "image": f"{item_id}.png", "label": label, "split": split})
            seed += 1
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test_ids = [r["id"] for r in rows if r["split"] == "test"]
    mixtures = [
        {"id": f"m{i}", "target": test_ids[i], "interferers": [test_ids[(i + 1) % 3]], "seed": i} for i in range(3)
    ]
    (folder / "mixtures_test.jsonl").write_text("".join(json.dumps(m) + "\n" for m in mixtures))

    encoder = ToyEncoder(dim=DIM)
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=DIM)).eval()
    with torch.no_grad():  # the paper's tiny init gives a flat 0.5 mask; spread it so estimates differ
        for parameter in model.unet.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3)
        model.query_proj.weight.normal_(0.0, 1.0)
    labels = sorted(CLASSES)
    bank = QueryBank(labels, encoder.embed_text(labels))
    checkpoint = save_checkpoint(folder / "ckpt", model, encoder.identity(), bank)
    return folder, checkpoint, encoder, rows


def _config(**overrides):
    # Scoring the first 8,192 samples keeps the tests quick; the rules do not depend on it.
    values = dict(workers=0, backend="fast", sweep_modes=("text",), length=SCORED)
    values.update(overrides)
    return EvaluationConfig(**values)


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    folder, checkpoint, encoder, _ = corpus
    out = tmp_path_factory.mktemp("eval")
    config = _config(descriptions={label: [label.upper(), f"the sound of {label}"] for label in CLASSES}, alpha_sweep=(0.0, 1.0))
    test_set = load_test_set(folder / "mixtures_test.jsonl")
    result = evaluate(checkpoint, test_set, out, config, encoder=encoder, progress=False)
    return out, test_set, result


def test_mixture_row_is_the_target_to_interferer_ratio(run, corpus):
    _, test_set, result = run
    from omnisep.data.mixing import MixtureDataset, QueryTable

    table = QueryTable(test_set.items, encoder=corpus[2])
    dataset = MixtureDataset(test_set.items, table, training=False, mixtures=test_set.mixtures)
    expected = []
    for index in range(3):
        target, interferer = dataset[index]["sources"].double().numpy()[:, :SCORED]
        expected.append(10 * math.log10(np.sum(target**2) / np.sum(interferer**2)))
    mixture_row = result.table1[0]
    assert mixture_row.name == "Unprocessed mixture"
    assert mixture_row.summary("sdr").mean == pytest.approx(np.mean(expected), abs=1e-4)
    assert mixture_row.summary("sdri").mean == pytest.approx(0.0, abs=1e-9)


def test_oracle_masks_separate_distinct_tones(run):
    _, _, result = run
    rows = {row.name: row for row in result.table1}
    mixture = rows["Unprocessed mixture"].summary("sdr").mean
    for name in ("Oracle ideal binary mask", "Oracle ideal ratio mask"):
        assert rows[name].summary("sdr").mean > mixture + 10  # sines an octave+ apart: near-perfect masks
        assert len(rows[name].scores) == 3


def test_every_mode_has_a_row_with_and_without_negative(run):
    _, _, result = run
    names = [row.name for row in result.table1]
    for mode in ("text", "image", "audio", "composed"):
        assert f"{mode} query" in names
        assert f"{mode} query + NQ (text, α=0.5, proportional)" in names
    assert all(len(row.scores) + row.skipped == 3 for row in result.table1)


def test_alpha_zero_is_the_plain_query_in_both_forms(run):
    _, _, result = run
    plain = {row.name: row for row in result.table1}["text query"].summary("sdr").mean
    proportional, naive = result.sweep[("text", "proportional")], result.sweep[("text", "naive")]
    assert [alpha for alpha, _ in proportional] == [0.0, 1.0]
    assert proportional[0][1].mean == naive[0][1].mean == pytest.approx(plain)


def test_query_aug_rows(run):
    _, _, result = run
    assert [row.name for row in result.table3] == [
        "class labels", "class labels + Query-Aug", "free-form descriptions", "free-form descriptions + Query-Aug",
    ]


def test_queries_follow_the_paper_equations(corpus):
    folder, _, encoder, rows = corpus
    test_set = load_test_set(folder / "mixtures_test.jsonl")
    from omnisep.data.mixing import QueryTable

    table = QueryTable(test_set.items, encoder=encoder)
    config = _config(audio_clips=5)
    builder = QueryBuilder(test_set, table, config)
    target, interferer = test_set.mixtures[0]
    target_item, interferer_item = test_set.items[target], test_set.items[interferer]
    text = encoder.embed_text([target_item.label])[0]
    negative_text = encoder.embed_text([interferer_item.label])[0]
    image = encoder.embed_image([str(target_item.image)])[0]
    train_audio = [
        encoder.embed_audio([str(folder / r["audio"])])[0]
        for r in rows if r["label"] == target_item.label and r["split"] == "train"
    ]
    audio = F.normalize(torch.stack([F.normalize(a, dim=0) for a in train_audio]).mean(0), dim=0)

    specs = [
        QuerySpec.make("text"),
        QuerySpec.make("text", alpha=0.5, negative_mode="proportional"),
        QuerySpec.make("text", alpha=0.5, negative_mode="naive"),
        QuerySpec.make("audio"),
        QuerySpec.make("composed"),
        QuerySpec.make("text", alpha=2.0, negative_mode="logit"),
    ]
    rows, available = builder.build(0, specs)
    assert available == [True] * len(specs)
    # The logit mode keeps the negative as its own row (the text row is shared with the plain
    # text query); the outputs combine the rows' logits.
    assert len(rows) == len(specs) and rows.rows.shape[0] == len(specs)
    assert torch.allclose(rows.rows[-1], F.normalize(negative_text, dim=0), atol=1e-6)
    expected = torch.zeros(len(specs), len(specs))
    expected[:5, :5] = torch.eye(5)
    expected[5, 0], expected[5, 5] = 3.0, -2.0
    torch.testing.assert_close(rows.combine, expected)
    built = rows.rows
    assert torch.allclose(built[0], text, atol=1e-6)
    assert torch.allclose(built[1], 1.5 * text - 0.5 * negative_text, atol=1e-6)
    assert torch.allclose(built[2], text - 0.5 * negative_text, atol=1e-6)
    assert torch.allclose(built[3], audio, atol=1e-6)  # S = 5 > 2 training clips: both are averaged
    composed = F.normalize(2 * F.normalize(image, dim=0) + 2 * text + audio, dim=0)
    assert torch.allclose(built[4], composed, atol=1e-6)


def test_reports_are_written_only_when_complete(run):
    out, _, result = run
    assert (out / "scores.jsonl").is_file() and not (out / "scores.partial.jsonl").exists()
    lines = (out / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "text" in json.loads(lines[0])["scores"]
    written = write_evaluation_reports(out, result, {"checkpoint": "ckpt", "test_set": "t", "backend": "fast"})
    assert {p.name for p in written} == {
        "table1.md", "table1.csv", "table3.md", "table3.csv", "alpha_sweep.csv", "fig2_alpha_sweep.png", "summary.json",
    }
    markdown = (out / "table1.md").read_text()
    assert "| Unprocessed mixture |" in markdown and "Mean SDRi" in markdown
    with open(out / "table1.csv") as handle:
        table = list(csv.DictReader(handle))
    assert float(table[0]["sdr_mean"]) == pytest.approx(result.table1[0].summary("sdr").mean)
    assert (out / "fig2_alpha_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_run_leaves_only_a_partial_file(corpus, tmp_path):
    folder, checkpoint, encoder, _ = corpus

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(checkpoint, load_test_set(folder / "mixtures_test.jsonl"), tmp_path, _config(oracles=False, modes=("text",), with_negative=False),
                 encoder=encoder, progress=False, on_item=interrupt)
    assert [p.name for p in tmp_path.iterdir()] == ["scores.partial.jsonl"]
    assert len((tmp_path / "scores.partial.jsonl").read_text().splitlines()) == 1


def test_missing_audio_file_is_named(corpus, tmp_path):
    folder, _, _, rows = corpus
    manifest = tmp_path / "manifest.jsonl"
    moved = [dict(r, audio=str(folder / r["audio"]), image=str(folder / r["image"])) for r in rows]
    moved[2]["audio"] = str(tmp_path / "gone.wav")
    manifest.write_text("".join(json.dumps(r) + "\n" for r in moved))
    (tmp_path / "mixtures.jsonl").write_text((folder / "mixtures_test.jsonl").read_text())
    with pytest.raises(OmniSepError, match="gone.wav"):
        load_test_set(tmp_path / "mixtures.jsonl")


def test_empty_test_list_is_refused(corpus, tmp_path):
    folder, _, _, _ = corpus
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(OmniSepError, match="empty.jsonl.*no mixtures"):
        load_test_set(empty, folder / "manifest.jsonl")


def test_checkpoint_of_another_encoder_is_refused(corpus, tmp_path):
    folder, checkpoint, _, _ = corpus
    with pytest.raises(OmniSepError, match="ckpt.*does not match"):
        evaluate(checkpoint, load_test_set(folder / "mixtures_test.jsonl"), tmp_path, _config(), encoder=_OtherToy(dim=DIM),
                 progress=False)
    assert not any(tmp_path.iterdir())


class _OtherToy(ToyEncoder):
    version = "2"


def test_descriptions_must_cover_every_target_class(corpus, tmp_path):
    folder, checkpoint, encoder, _ = corpus
    config = _config(descriptions={"dog barking": ["a dog"]})
    with pytest.raises(OmniSepError, match="no description for class"):
        evaluate(checkpoint, load_test_set(folder / "mixtures_test.jsonl"), tmp_path, config, encoder=encoder, progress=False)


def test_cli_with_cache_process_pool_and_museval(corpus, tmp_path, capsys):
    from omnisep.cli import main
    from omnisep.data.cache import build_cache
    from omnisep.data.manifest import read_manifest

    folder, checkpoint, encoder, _ = corpus
    build_cache(read_manifest(folder / "manifest.jsonl"), encoder, tmp_path / "cache")
    out = tmp_path / "eval"
    code = main(["evaluate", str(checkpoint), str(folder / "mixtures_test.jsonl"), "--out", str(out), "--cache", str(tmp_path / "cache"),
                 "--modes", "text", "--no-negative", "--no-oracles", "--workers", "2", "--backend", "museval", "--limit", "2", "--quiet"])
    assert code == 0
    assert "| text query |" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 2 and summary["table1"]["text query"]["sdr"]["count"] == 2
    # the same run in-process with the fast backend gives the same numbers
    fast = evaluate(checkpoint, load_test_set(folder / "mixtures_test.jsonl"), tmp_path / "fast",
                    _config(modes=("text",), with_negative=False, oracles=False, limit=2, length=SCORED_LENGTH), cache=tmp_path / "cache", progress=False)
    for row in fast.table1:
        for metric in ("sdr", "sir", "sar"):
            assert row.summary(metric).mean == pytest.approx(summary["table1"][row.name][metric]["mean"], abs=1e-3)


def test_cli_user_errors_exit_2_with_one_sentence(corpus, tmp_path, capsys):
    from omnisep.cli import main

    folder, checkpoint, _, _ = corpus
    code = main(["evaluate", str(tmp_path / "nockpt"), str(folder / "mixtures_test.jsonl"), "--out", str(tmp_path / "o"), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and "nockpt" in error and "Traceback" not in error
    code = main(["evaluate", str(checkpoint), str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "none.jsonl" in capsys.readouterr().err


def test_cache_of_another_encoder_is_refused(corpus, tmp_path):
    from omnisep.data.cache import build_cache
    from omnisep.data.manifest import read_manifest

    folder, checkpoint, _, _ = corpus
    build_cache(read_manifest(folder / "manifest.jsonl"), _OtherToy(dim=DIM), tmp_path / "cache", modalities=("text",))
    with pytest.raises(OmniSepError, match="cache.*does not fit checkpoint"):
        evaluate(checkpoint, load_test_set(folder / "mixtures_test.jsonl"), tmp_path / "out", _config(modes=("text",)),
                 cache=tmp_path / "cache", progress=False)


def test_an_item_without_a_picture_skips_only_its_image_rows(corpus):
    folder, _, encoder, rows = corpus
    test_set = load_test_set(folder / "mixtures_test.jsonl")
    from omnisep.data.mixing import QueryTable

    target = test_set.mixtures[0][0]
    test_set.items[target].image = None  # a class with no picture (the corpus has six)
    table = QueryTable(test_set.items, encoder=encoder)
    builder = QueryBuilder(test_set, table, _config(audio_clips=5))
    specs = [QuerySpec.make("text"), QuerySpec.make("image"), QuerySpec.make("composed")]
    queries, available = builder.build(0, specs)
    assert available == [True, False, True]
    assert torch.count_nonzero(queries.rows[1]) == 0  # placeholder; its score is not counted
    assert all(builder.build(1, specs)[1])

    rng = np.random.default_rng(0)
    source, other = rng.standard_normal((2, SCORED)) * 0.1
    job = {"target": source, "interferer": other, "mixture": source + other,
           "estimates": np.stack([source + 0.1 * other, source]), "keys": ["text", "image"], "unavailable": ["image"],
           "backend": "fast", "length": SCORED, "index": 0}
    scores = score_job(job)["scores"]
    assert scores["image"] is None and scores["text"]["sdr"] > 15


def test_the_query_contrast_reaches_every_evaluated_query(corpus):
    from omnisep.data.mixing import QueryTable
    from omnisep.queries import background_query
    from omnisep.states import load_checkpoint

    folder, checkpoint, encoder, _ = corpus
    test_set = load_test_set(folder / "mixtures_test.jsonl")
    bank = load_checkpoint(checkpoint).bank
    builder = QueryBuilder(test_set, QueryTable(test_set.items, encoder=encoder), _config(contrast=0.5), bank)
    specs = [QuerySpec.make("text"), QuerySpec.make("text", alpha=2.0, negative_mode="logit")]
    rows, available = builder.build(0, specs)
    assert available == [True, True]
    # rows: the text query, the background, the negative; a query with a negative gets no contrast.
    assert rows.rows.shape[0] == 3
    torch.testing.assert_close(rows.rows[1], background_query(bank.embeddings))
    torch.testing.assert_close(rows.combine, torch.tensor([[1.5, -0.5, 0.0], [3.0, 0.0, -2.0]]))


def test_the_second_look_reaches_every_evaluated_query_and_is_checked(corpus):
    from omnisep.data.mixing import QueryTable
    from omnisep.states import load_checkpoint, read_config

    folder, checkpoint, encoder, _ = corpus
    test_set = load_test_set(folder / "mixtures_test.jsonl")
    bank = load_checkpoint(checkpoint).bank
    config = _config(second_look=-12.0)
    builder = QueryBuilder(test_set, QueryTable(test_set.items, encoder=encoder), config, bank)
    rows, _ = builder.build(0, [QuerySpec.make("text"), QuerySpec.make("text", alpha=2.0, negative_mode="logit")])
    assert rows.second_look == -12.0
    # The checkpoint's own gate when none is given; none when told to skip it.
    recorded = {**read_config(checkpoint), "inference": {"second_look": {"below_db": -9}}}
    assert _config().resolved(recorded, checkpoint).second_look == -9.0
    assert _config(second_look=-12.0).resolved(recorded, checkpoint).second_look == -12.0
    assert _config(skip_second_look=True).resolved(recorded, checkpoint).second_look is None
    with pytest.raises(OmniSepError, match="second look's gate must be a negative number of dB, got 3"):
        _config(second_look=3.0).validate()
