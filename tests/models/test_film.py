"""Kind "film": the query steers the decoder; many queries equal one at a time; zero modulation at start."""

import pytest
import torch

from omnisep import spectral
from omnisep.errors import OmniSepError
from omnisep.models import FilmNet, FilmNetConfig, build, config_to_dict

TINY = FilmNetConfig(ngf=4, depth=3, k=4, emb_dim=6, film_hidden=8)


def model() -> FilmNet:
    torch.manual_seed(0)
    return FilmNet(TINY).eval()


def test_registry_round_trip():
    net = build(config_to_dict(TINY))
    assert type(net) is FilmNet and config_to_dict(net.config)["kind"] == "film"


def test_many_queries_equal_one_at_a_time_and_the_encoder_runs_once():
    net = model()
    with torch.no_grad():
        for film in [net.bottleneck_film, *net.decoder_film]:
            film.out.weight.normal_(0, 0.5)
    mag = spectral.warp(torch.rand(2, 1, 513, 16) + spectral.MAG_EPS)
    queries = torch.randn(2, 3, 6)
    calls = []
    net.down[0].register_forward_hook(lambda *args: calls.append(1))
    together = net(mag, queries)
    assert len(calls) == 1 and together.shape == (2, 3, 256, 16)
    for q in range(3):
        torch.testing.assert_close(together[:, q : q + 1], net(mag, queries[:, q : q + 1]), atol=1e-5, rtol=1e-4)
    # with modulation, the decoder output depends on the query beyond eq. 2's weights
    same_weights = queries.clone()
    same_weights[:, 1] = queries[:, 0]
    assert not torch.allclose(net(mag, queries)[:, 1], net(mag, same_weights)[:, 1])


def test_untrained_modulation_is_the_identity():
    net = model()
    mag = spectral.warp(torch.rand(1, 1, 513, 8) + spectral.MAG_EPS)
    skips, bottleneck = net.prepare(mag)
    code = net.query_code(torch.randn(1, 6))
    torch.testing.assert_close(net.bottleneck_film(bottleneck, code), bottleneck)


def test_warm_start_from_a_paper_network_computes_the_same_masks():
    from omnisep.models import SeparateNet, SeparateNetConfig

    torch.manual_seed(3)
    paper = SeparateNet(SeparateNetConfig(ngf=4, depth=3, k=4, emb_dim=6, align_corners=False)).eval()
    with torch.no_grad():
        for parameter in paper.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    film = FilmNet(FilmNetConfig(ngf=4, depth=3, k=4, emb_dim=6, film_hidden=8)).eval()
    film.load_state_dict(film.adapt_state(paper.state_dict(), "paper"))
    mag = spectral.warp(torch.rand(2, 1, 513, 16) + spectral.MAG_EPS)
    queries = torch.randn(2, 3, 6)
    with torch.no_grad():
        torch.testing.assert_close(film(mag, queries), paper(mag, queries), atol=1e-5, rtol=1e-4)


def _perturbed(net: FilmNet) -> FilmNet:
    """Every weight, modulation and running statistic away from its initial value."""
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return net


def test_a_narrow_film_network_grows_into_a_wider_one_that_computes_the_same_masks():
    torch.manual_seed(5)
    narrow = _perturbed(FilmNet(FilmNetConfig(ngf=2, depth=5, k=4, emb_dim=6, film_hidden=8)))
    wide = FilmNet(FilmNetConfig(ngf=4, depth=5, k=4, emb_dim=6, film_hidden=8))
    wide.load_state_dict(wide.adapt_state(narrow.state_dict(), "film"))
    mag = spectral.warp(torch.rand(3, 1, 513, 32) + spectral.MAG_EPS)
    queries = torch.randn(3, 2, 6)
    for train in (False, True):  # running statistics, then batch statistics
        narrow.train(train), wide.train(train)
        with torch.no_grad():
            torch.testing.assert_close(wide(mag, queries), narrow(mag, queries), atol=1e-5, rtol=1e-4)
    # the new channels are not dead: the zero weights that would let old channels read them get gradients
    wide.train()
    wide(mag, queries).square().mean().backward()
    grad = wide.up[0][2].weight.grad  # columns 2..3 and 6..7 are new skip / decoder channels
    assert grad[:, [2, 3, 6, 7]].abs().sum() > 0
    assert wide.up[0][2].weight[:, [2, 3, 6, 7]].abs().sum() == 0


def test_a_film_network_cannot_start_from_a_wider_one():
    wide = FilmNet(FilmNetConfig(ngf=4, depth=3, k=4, emb_dim=6, film_hidden=8))
    narrow = FilmNet(FilmNetConfig(ngf=2, depth=3, k=4, emb_dim=6, film_hidden=8))
    with pytest.raises(OmniSepError, match="ngf 2 cannot start from a wider one"):
        narrow.adapt_state(wide.state_dict(), "film")


def test_a_channels_last_network_keeps_its_decoder_channels_last_and_computes_the_same():
    # the skip concatenation returns the default layout; without converting back every decoder level paid
    # for layout conversions inside its up-sampling and convolution (a third of a CPU pass, benchmarks/rtf.py)
    net = model()
    mag = spectral.warp(torch.rand(2, 1, 513, 24) + spectral.MAG_EPS)
    queries = torch.randn(2, 3, 6)
    with torch.no_grad():
        plain = net(mag, queries)
        net = net.to(memory_format=torch.channels_last)
        seen = []
        hooks = [up[0].register_forward_hook(lambda module, args, out: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last))) for up in net.up]
        fast = net(mag.contiguous(memory_format=torch.channels_last), queries)
    for hook in hooks:
        hook.remove()
    # the innermost level reads the bottleneck; every other level reads a skip concatenation
    assert seen == [True] * TINY.depth
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
