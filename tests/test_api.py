import shutil
import warnings

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omnisep import pretrained
from omnisep.api import Query, Separator
from omnisep.audio import load_audio, save_audio
from omnisep.encoders import get_encoder
from omnisep.errors import OmniSepError

RATE = 22050


@pytest.fixture(scope="module")
def separator(tiny_checkpoint):
    return Separator(tiny_checkpoint)


@pytest.fixture(scope="module")
def toy():
    return get_encoder("toy")


def mixture(seconds=2.0, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((channels, int(seconds * RATE)))).astype(np.float32)


def test_target_plus_residual_is_the_input_in_its_own_layout(separator):
    audio = mixture()
    result = separator.separate(audio, RATE, text="dog barking")
    assert result.target.shape == result.residual.shape == audio.shape
    assert result.sample_rate == RATE and result.query_label == "dog barking"
    np.testing.assert_array_equal(result.residual, audio - result.target)
    np.testing.assert_allclose(result.target + result.residual, audio, atol=1e-7)
    assert 0.05 < np.abs(result.target).max() / np.abs(audio).max() < 0.95  # a mask in (0, 1), not a copy
    mono = separator.separate(audio[0], RATE, text="dog barking")
    assert mono.target.shape == (audio.shape[1],)
    np.testing.assert_allclose(mono.target, result.target[0], atol=1e-6)  # channels are independent


def test_downmix(separator):
    audio = mixture()
    result = separator.separate(audio, RATE, text="violin", downmix=True)
    assert result.target.shape == (1, audio.shape[1])
    np.testing.assert_allclose(result.residual + result.target, audio.mean(axis=0, keepdims=True), atol=1e-7)


def test_query_vectors_follow_the_paper_equations(separator, toy):
    dog, violin, speech = toy.embed_text(["dog barking", "violin", "speech"])
    torch.testing.assert_close(separator.embed_query(text="dog barking"), dog)
    composed = separator.embed_query(text=["dog barking", "violin"], weights=[2.0, 1.0])
    torch.testing.assert_close(composed, 2 * dog + violin)  # eq. 1, not re-normalised
    negative = separator.embed_query(text="dog barking", negative_text="speech", alpha=0.5)
    torch.testing.assert_close(negative, 1.5 * dog - 0.5 * speech)  # eq. 4
    naive = separator.embed_query(text="dog barking", negative_text="speech", alpha=0.5, negative_mode="naive")
    torch.testing.assert_close(naive, dog - 0.5 * speech)


def test_query_aug_snaps_to_the_bank_before_the_negative(separator, toy):
    (violin,) = toy.embed_text(["violin"])
    (speech,) = toy.embed_text(["speech"])
    mix = mixture(1.0)
    result = separator.separate(mix, RATE, text="  VIOLIN ", query_aug=True, negative_text="speech")
    assert result.query_label == "violin - speech"
    assert result.query_aug_score == pytest.approx(1.0, abs=1e-5)
    vector = separator.embed_query(text="  VIOLIN ", query_aug=True, negative_text="speech")
    torch.testing.assert_close(vector, 1.5 * violin - 0.5 * speech, atol=1e-6, rtol=0)


def test_audio_and_video_queries(separator, toy, tmp_path):
    clip = (0.3 * np.sin(2 * np.pi * 880 * np.arange(16000) / 16000)).astype(np.float32)
    expected = toy.embed_audio([clip], sample_rate=16000)[0]
    torch.testing.assert_close(separator.embed_query(audio=(clip, 16000)), expected)
    save_audio(tmp_path / "clip.wav", clip, 16000, subtype="FLOAT")
    torch.testing.assert_close(separator.embed_query(audio=str(tmp_path / "clip.wav")), expected)

    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    path = tmp_path / "red.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=2)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    for _ in range(8):
        for packet in stream.encode(av.VideoFrame.from_ndarray(red, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    from_video = separator.embed_query(image=path)
    assert float(F.cosine_similarity(from_video, toy.embed_image([red])[0], dim=0)) > 0.99


def test_many_queries_in_one_pass_equal_single_queries(separator):
    audio = mixture(3.0)
    queries = [Query(text="dog barking"), Query(text="violin", negative_text="speech"), Query(text="speech")]
    many = separator.separate_many(audio, RATE, queries)
    assert [r.query_label for r in many] == ["dog barking", "violin - speech", "speech"]
    for query, result in zip(queries, many):
        alone = separator.separate_many(audio, RATE, [query])[0]
        np.testing.assert_allclose(result.target, alone.target, atol=1e-6)


def test_separate_file_streams_to_the_same_result(separator, tmp_path):
    audio = mixture(4.0)
    save_audio(tmp_path / "mix.flac", audio, RATE, subtype="PCM_24")
    loaded, _ = load_audio(tmp_path / "mix.flac")
    queries = [Query(text="dog barking"), Query(text="violin")]
    expected = separator.separate_many(loaded, RATE, queries, chunk_seconds=1, overlap=0.5)
    targets = [tmp_path / "out" / f"t{i}.wav" for i in range(2)]
    residuals = [tmp_path / "out" / f"r{i}.wav" for i in range(2)]
    rows = separator.separate_file(
        tmp_path / "mix.flac", queries, targets, residuals, subtype="FLOAT", chunk_seconds=1, overlap=0.5
    )
    assert [row["query"] for row in rows] == ["dog barking", "violin"]
    for index in range(2):
        np.testing.assert_array_equal(load_audio(targets[index])[0], expected[index].target)
        np.testing.assert_array_equal(load_audio(residuals[index])[0], expected[index].residual)
    # an existing output is refused before anything is written
    with pytest.raises(OmniSepError, match="already exists"):
        separator.separate_file(tmp_path / "mix.flac", queries, [tmp_path / "new.wav", targets[1]])
    assert not (tmp_path / "new.wav").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r0.wav", "r1.wav", "t0.wav", "t1.wav"]


def test_bad_input_and_queries(separator):
    bad = mixture(0.5)
    bad[0, 10] = np.nan
    with pytest.raises(OmniSepError, match="NaN or infinite"):
        separator.separate(bad, RATE, text="dog barking")
    with pytest.raises(OmniSepError, match="zero length"):
        separator.separate(np.zeros((2, 0), np.float32), RATE, text="dog barking")
    with pytest.raises(OmniSepError, match="sample rate must be a positive integer"):
        separator.separate(mixture(0.5), 0, text="dog barking")
    with pytest.raises(OmniSepError, match="at least one text, image or audio"):
        separator.separate(mixture(0.5), RATE)


def test_model_registry_and_encoder_check(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setenv("OMNISEP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OmniSepError, match="bundled model 'default' is missing"):
        Separator("default")
    shutil.copytree(tiny_checkpoint, tmp_path / "cache" / "models" / "tiny")
    (tmp_path / "cache" / "models" / "broken").mkdir()
    rows = pretrained.list_models()
    assert [(r["name"], r["source"], r["encoder"], r["labels"], r["ngf"]) for r in rows] == [
        ("broken", "local", None, None, None),
        ("tiny", "local", "toy", 3, 4),
    ]
    assert "config.json" in rows[0]["error"]
    assert Separator("tiny").path == tmp_path / "cache" / "models" / "tiny"
    with pytest.raises(OmniSepError, match=r"'nope' is neither .* \(known models: broken, tiny\)"):
        pretrained.resolve_model("nope")
    with pytest.raises(OmniSepError, match="does not exist"):
        pretrained.resolve_model("./no/such/folder")
    with pytest.raises(OmniSepError, match="does not match the one the checkpoint was trained with"):
        Separator(tiny_checkpoint, encoder=get_encoder("toy", dim=32))


def test_query_aug_needs_a_bank(tmp_path, toy):
    from omnisep.models import SeparateNet, SeparateNetConfig
    from omnisep.states import save_checkpoint

    model = SeparateNet(SeparateNetConfig(ngf=2, depth=2, k=2, emb_dim=toy.dim))
    save_checkpoint(tmp_path / "plain", model, toy.identity(), bank=None)
    with pytest.raises(OmniSepError, match="has no query bank"):
        Separator(tmp_path / "plain").separate(mixture(0.5), RATE, text="violin", query_aug=True)


def test_a_text_naming_a_bank_label_reuses_the_bank_row_without_the_text_model(tiny_checkpoint, toy):
    from omnisep.encoders.toy import ToyEncoder

    embedded = []

    class CountingToy(ToyEncoder):
        def _embed_text(self, texts):
            embedded.extend(texts)
            return super()._embed_text(texts)

    separator = Separator(tiny_checkpoint, encoder=CountingToy())
    dog, speech = toy.embed_text(["dog barking", "speech"])
    torch.testing.assert_close(separator.embed_query(text=" dog  barking"), dog)
    torch.testing.assert_close(separator.embed_query(text="dog barking", negative_text="speech"), 1.5 * dog - 0.5 * speech)
    assert embedded == []  # both are bank labels: no text was embedded
    (cat,) = toy.embed_text(["a cat"])
    torch.testing.assert_close(separator.embed_query(text="a cat"), cat)
    assert embedded == ["a cat"]


def test_a_model_can_ask_for_logit_space_negatives(tiny_checkpoint, toy, tmp_path):
    from omnisep.models import signal_path
    from omnisep.states import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    directory = tmp_path / "logit-model"
    save_checkpoint(directory, loaded.model, loaded.config["encoder"], loaded.bank,
                    inference={"negative": {"mode": "logit", "alpha": 2.0, "auto_alpha": 1.0}})
    separator = Separator(directory)
    assert separator.negative_defaults == {"mode": "logit", "alpha": 2.0, "auto_alpha": 1.0, "auto_count": 1, "auto_source": "scan"}
    wave = torch.from_numpy(mixture(2.0, channels=1)[0])
    result = separator.separate(wave.numpy(), 16000, text="violin", negative_text="speech")
    # By hand: one U-Net pass, logits 3 L(violin) - 2 L(speech), the soft mask, the mixture's phase.
    violin, speech = toy.embed_text(["violin", "speech"])
    net = separator.model
    with torch.no_grad():
        spec = signal_path.analyse(wave[None])
        prepared = net.prepare(signal_path.pad_frames(signal_path.network_input(spec), net.time_multiple))
        logits = net.mask_logits(prepared, torch.stack([F.normalize(violin, dim=0), F.normalize(speech, dim=0)])[None])
        combined = 3.0 * logits[:, :1] - 2.0 * logits[:, 1:]
        expected = signal_path.synthesise(signal_path.apply_masks(spec, torch.sigmoid(combined[..., : spec.shape[-1]])), wave.shape[-1])
    np.testing.assert_allclose(result.target, expected[0, 0].numpy(), atol=2e-5)
    # Eq. 4 stays one explicit choice away; a query without a negative is the same in every mode.
    eq4 = separator.embed_query(text="violin", negative_text="speech", negative_mode="proportional", alpha=0.5)
    torch.testing.assert_close(eq4, 1.5 * F.normalize(violin, dim=0) - 0.5 * F.normalize(speech, dim=0))
    with pytest.raises(OmniSepError, match="logit"):
        separator.embed_query(text="violin", negative_text="speech")
    plain = separator.separate(wave.numpy(), 16000, text="violin").target
    np.testing.assert_allclose(plain, Separator(tiny_checkpoint).separate(wave.numpy(), 16000, text="violin").target, atol=1e-6)


def test_a_damaged_inference_section_names_the_model(tiny_checkpoint, tmp_path):
    import json

    directory = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, directory)
    config = json.loads((directory / "config.json").read_text())
    config["inference"] = {"negative": {"mode": "sideways"}}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(OmniSepError, match="bad.*sideways"):
        Separator(directory)


def test_the_query_contrast_subtracts_the_background_querys_logits(tiny_checkpoint, toy, tmp_path):
    from omnisep.models import signal_path
    from omnisep.queries import background_query
    from omnisep.states import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.query_proj.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(5))  # queries matter
    directory = tmp_path / "contrast-model"
    save_checkpoint(directory, loaded.model, loaded.config["encoder"], loaded.bank, inference={"contrast": {"alpha": 0.5}})
    save_checkpoint(tmp_path / "plain-model", loaded.model, loaded.config["encoder"], loaded.bank)
    separator = Separator(directory)
    assert separator.contrast == 0.5
    wave = torch.from_numpy(mixture(2.0, channels=1)[0])
    result = separator.separate(wave.numpy(), 16000, text="violin")
    background = background_query(loaded.bank.embeddings)
    torch.testing.assert_close(background, F.normalize(F.normalize(loaded.bank.embeddings, dim=-1).mean(0), dim=0))
    violin = F.normalize(toy.embed_text(["violin"])[0], dim=0)
    net = separator.model
    with torch.no_grad():
        spec = signal_path.analyse(wave[None])
        prepared = net.prepare(signal_path.pad_frames(signal_path.network_input(spec), net.time_multiple))
        logits = net.mask_logits(prepared, torch.stack([violin, background])[None])
        combined = 1.5 * logits[:, :1] - 0.5 * logits[:, 1:]
        expected = signal_path.synthesise(signal_path.apply_masks(spec, torch.sigmoid(combined[..., : spec.shape[-1]])), wave.shape[-1])
    np.testing.assert_allclose(result.target, expected[0, 0].numpy(), atol=2e-5)
    # contrast=0 turns it off: the plain model's answer.
    off = separator.separate(wave.numpy(), 16000, text="violin", contrast=0).target
    np.testing.assert_allclose(off, Separator(tmp_path / "plain-model").separate(wave.numpy(), 16000, text="violin").target, atol=1e-6)
    assert np.abs(off - result.target).max() > 1e-3
    # A negative query says what to keep apart itself: no contrast then.
    with_negative = separator.separate(wave.numpy(), 16000, text="violin", negative_text="speech").target
    plain_negative = Separator(tmp_path / "plain-model").separate(wave.numpy(), 16000, text="violin", negative_text="speech")
    np.testing.assert_allclose(with_negative, plain_negative.target, atol=1e-6)


def test_an_audio_example_is_made_ready_before_it_is_embedded(tiny_checkpoint, monkeypatch):
    """A user's example is checked and resampled to the encoder's rate, then handed to the encoder's
    prepare_example (the bundled encoder trims it and loops a short one), then embedded."""
    separator = Separator(tiny_checkpoint)
    encoder = separator.encoder
    seen = []

    def ready(wave, rate):
        seen.append((wave.shape, rate))
        return np.tile(wave, 2)

    monkeypatch.setattr(encoder, "prepare_example", ready)
    t = np.arange(11025) / 22050
    clip = (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)  # 0.5 s at 22.05 kHz
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a prepared example is not "padded"
        vector = separator.embed_query(audio=(clip, 22050))
    with pytest.warns(UserWarning, match="padded"):  # the plain path warns of a short clip; the prepared one did not
        mono = encoder._prepare_audio([clip], 22050)[0]
    assert seen == [(mono.shape, encoder.audio_sample_rate)]
    expected = encoder.embed("audio", [np.tile(mono, 2)], sample_rate=encoder.audio_sample_rate)[0]
    torch.testing.assert_close(vector, expected)
    with pytest.warns(UserWarning, match="padded"):
        unprepared = encoder.embed("audio", [clip], sample_rate=22050)[0]
    assert not torch.allclose(vector, unprepared)
