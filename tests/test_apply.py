import numpy as np
import pytest
import torch
from torch import nn

from omnisep.apply import ChunkedSeparator, chunk_layout, separate_array, separate_stream, separate_tensor
from omnisep.audio import AudioReader, AudioWriter, load_audio, resample, save_audio
from omnisep.models import SeparateNet, SeparateNetConfig, signal_path

SR = 16000
EMB = 8


def lively_model(depth=4, align_corners=False, seed=0):
    """A random model whose masks really depend on the audio (PyTorch's default conv init, not 1e-3).

    ``align_corners=False`` makes the U-Net shift-equivariant, the property
    under which chunking can be exact; the paper's layer uses True.
    """
    torch.manual_seed(seed)
    model = SeparateNet(SeparateNetConfig(ngf=4, depth=depth, k=4, emb_dim=EMB))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
        if isinstance(module, nn.Upsample):
            module.align_corners = align_corners
    return model.eval()


def constant_mask_model(value: float):
    """Every mask is ``value`` everywhere: the output is ``value * istft(stft(x))``."""
    model = lively_model()
    with torch.no_grad():
        model.scale.zero_()
        model.bias.fill_(float(np.log(value / (1 - value))) if value < 1 else 50.0)
    return model


def noise(seconds, seed=1, channels=None):
    generator = torch.Generator().manual_seed(seed)
    shape = (int(seconds * SR),) if channels is None else (channels, int(seconds * SR))
    return 0.1 * torch.randn(shape, generator=generator)


QUERIES = torch.randn(3, EMB, generator=torch.Generator().manual_seed(2))


def test_one_piece_equals_the_models_own_signal_path():
    model = lively_model()
    wave = noise(3.3)
    with torch.no_grad():
        reference = signal_path.separate(model, wave[None], QUERIES[None])[0]
    assert reference.abs().max() < 0.9
    out = separate_tensor(model, wave, QUERIES, chunk_seconds=10)
    assert out.shape == (3, wave.shape[0])
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)


def test_chunked_equals_one_piece_for_a_shift_equivariant_unet():
    model = lively_model(depth=6)
    wave = noise(30.0)[: 30 * SR - 77]  # not a whole number of hops
    one_piece = separate_tensor(model, wave, QUERIES, chunk_seconds=40)
    chunked = separate_tensor(model, wave, QUERIES, chunk_seconds=4, overlap=1)
    core, _, _ = chunk_layout(model, 4, 1)
    assert core * 256 < wave.shape[0] / 5  # really several chunks
    assert (chunked - one_piece).abs().max() < 1e-4 * one_piece.abs().max()
    batched = separate_tensor(model, wave, QUERIES, chunk_seconds=4, overlap=1, batch_size=3)
    torch.testing.assert_close(batched, chunked, atol=1e-6, rtol=0)


def test_chunked_stays_close_with_the_papers_align_corners_upsampling():
    # No chunking can be exact here (the up-sampling grid depends on the width);
    # the cross-fade keeps the difference far below the signal.
    model = lively_model(depth=6, align_corners=True)
    wave = noise(20.0)
    one_piece = separate_tensor(model, wave, QUERIES, chunk_seconds=40)
    chunked = separate_tensor(model, wave, QUERIES, chunk_seconds=4, overlap=2)
    snr = 10 * torch.log10(one_piece.pow(2).sum() / (chunked - one_piece).pow(2).sum())
    assert snr > 30


@pytest.mark.parametrize("value", [1.0, 0.5])
def test_fades_sum_to_one_so_a_constant_mask_scales_the_input(value):
    model = constant_mask_model(value)
    wave = noise(9.0)[:-1000]
    out = separate_tensor(model, wave, QUERIES[:1], chunk_seconds=2, overlap=0.5)
    torch.testing.assert_close(out[0], value * wave, atol=2e-6, rtol=0)


def test_the_unet_runs_once_per_chunk_for_all_queries():
    model = lively_model()
    calls = []
    original = model.features
    model.features = lambda mag: calls.append(mag.shape) or original(mag)
    wave = noise(6.0)
    many = separate_tensor(model, wave, QUERIES, chunk_seconds=2, overlap=0.5)
    core, context, _ = chunk_layout(model, 2, 0.5)
    n_frames = wave.shape[0] // 256 + 1
    assert len(calls) == -(-n_frames // core)
    assert all(shape[0] == 1 for shape in calls)
    for index in range(len(QUERIES)):
        alone = separate_tensor(model, wave, QUERIES[index : index + 1], chunk_seconds=2, overlap=0.5)
        torch.testing.assert_close(alone[0], many[index], atol=1e-6, rtol=0)


def test_output_does_not_depend_on_how_input_arrives():
    model = lively_model()
    wave = noise(12.0).numpy()[None]
    whole = ChunkedSeparator(model, QUERIES, chunk_seconds=2, overlap=0.5)
    expected = np.concatenate([whole.push(wave), whole.finish()], axis=-1)
    engine = ChunkedSeparator(model, QUERIES, chunk_seconds=2, overlap=0.5)
    rng = np.random.default_rng(0)
    parts, start, longest_buffer = [], 0, 0
    while start < wave.shape[1]:
        size = int(rng.integers(1, 9000))
        parts.append(engine.push(wave[:, start : start + size]))
        longest_buffer = max(longest_buffer, engine._buffer.shape[1])
        start += size
    parts.append(engine.finish())
    np.testing.assert_array_equal(np.concatenate(parts, axis=-1), expected)
    # memory is one chunk window (plus one block), not the whole input
    core, context, _ = chunk_layout(model, 2, 0.5)
    assert longest_buffer <= (core + 2 * context + 4) * 256 + 9000 < wave.shape[1] / 2


def test_short_empty_and_training_mode_inputs():
    model = lively_model()
    short = noise(0.01)  # 160 samples: a single STFT frame
    with torch.no_grad():
        reference = signal_path.separate(model, short[None], QUERIES[None])[0]
    torch.testing.assert_close(separate_tensor(model, short, QUERIES), reference, atol=1e-6, rtol=0)
    assert separate_tensor(model, torch.zeros(0), QUERIES).shape == (3, 0)
    model.train()
    torch.testing.assert_close(separate_tensor(model, short, QUERIES), reference, atol=1e-6, rtol=0)
    assert model.training  # restored


def test_any_rate_and_channels_round_trip_through_16k():
    model = constant_mask_model(1.0)
    rate = 44100
    t = np.arange(3 * rate) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)
    audio = np.stack([left, -0.5 * left]).astype(np.float32)
    out = separate_array(model, audio, rate, QUERIES[:2], chunk_seconds=1, overlap=0.5)
    assert out.shape == (2, 2, audio.shape[1])
    # mask 1: only the 16 kHz round trip remains, transparent below 8 kHz
    assert np.abs(out[0] - audio)[:, 3000:-3000].max() < 5e-4
    np.testing.assert_array_equal(out[0], out[1])
    expected = resample(resample(audio, rate, SR), SR, rate)[:, : audio.shape[1]]
    np.testing.assert_allclose(out[0], expected, atol=2e-6)


def test_streaming_from_a_file_equals_the_in_memory_path(tmp_path):
    model = lively_model()
    rate = 22050
    audio = noise(7.0, channels=2).numpy()
    audio = resample(audio, SR, rate)
    save_audio(tmp_path / "mix.wav", audio, rate, subtype="FLOAT")
    mixture, _ = load_audio(tmp_path / "mix.wav")
    expected = separate_array(model, mixture, rate, QUERIES, chunk_seconds=1, overlap=0.5)

    targets = [AudioWriter(tmp_path / f"t{q}.wav", rate, 2, subtype="FLOAT") for q in range(3)]
    residuals = [AudioWriter(tmp_path / f"r{q}.wav", rate, 2, subtype="FLOAT") for q in range(3)]
    seen = []
    reader = AudioReader(tmp_path / "mix.wav", block_frames=3001)
    count = separate_stream(
        model, reader, rate, 2, QUERIES, targets, residuals, chunk_seconds=1, overlap=0.5, on_input=seen.append
    )
    for writer in targets + residuals:
        writer.close()
    assert count == mixture.shape[1] == sum(seen)
    for q in range(3):
        target, _ = load_audio(tmp_path / f"t{q}.wav")
        residual, _ = load_audio(tmp_path / f"r{q}.wav")
        np.testing.assert_array_equal(target, expected[q])
        np.testing.assert_array_equal(residual, mixture - expected[q])


def test_logit_negatives_chunk_like_vectors_and_change_the_output():
    from omnisep.models import signal_path
    from omnisep.queries import QueryRows

    model = lively_model()
    with torch.no_grad():
        model.query_proj.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(5))  # queries matter
    wave = noise(3.3)
    rows = QueryRows.with_negatives([QUERIES[0]], [QUERIES[1]], [1.0])
    chunked = separate_tensor(model, wave, rows, chunk_seconds=1, overlap=0.5)
    with torch.no_grad():
        spec = signal_path.analyse(wave[None])
        prepared = model.prepare(signal_path.pad_frames(signal_path.network_input(spec), model.time_multiple))
        logits = model.mask_logits(prepared, torch.stack([QUERIES[0], torch.nn.functional.normalize(QUERIES[1], dim=0)])[None])
        combined = (2.0 * logits[:, :1] - logits[:, 1:])[..., : spec.shape[-1]]
        whole = signal_path.synthesise(signal_path.apply_masks(spec, torch.sigmoid(combined)), wave.shape[-1])[0]
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    plain = separate_tensor(model, wave, QUERIES[:1], chunk_seconds=1, overlap=0.5)
    assert (chunked - plain).abs().max() > 1e-3
