"""Kind ``film``: the paper's Separate-Net with the query also steering the U-Net's decoder.

The paper's network (kind ``paper``) lets the query only choose a weighting
of k query-free maps, so the U-Net cannot decide *what* to keep before that
last sum. Here the query modulates the bottleneck and every decoder level
with feature-wise affine maps (FiLM: ``h * (1 + gamma(q)) + beta(q)``),
and still picks the k output maps as in eq. 2, so Query-Mixup, negative
queries and Query-Aug apply unchanged. The encoder half does not see the
query: it runs once for any number of queries (:meth:`prepare`); each query
costs one decoder pass. The modulations start at zero, so an untrained
``film`` network is an untrained ``paper`` one.

The layout matches :class:`omnisep.models.unet.UNet` (4x4 stride-2
convolutions down, bilinear up-sampling + 3x3 convolutions up, skips that
carry the activated level input), written out level by level so the
decoder can take the query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnisep import spectral
from omnisep.errors import OmniSepError
from omnisep.models.base import MaskNetwork
from omnisep.models.separate_net import LINEAR_INIT_STD, SeparateNetConfig
from omnisep.models.unet import init_like_paper, level_channels


@dataclass(frozen=True)
class FilmNetConfig(SeparateNetConfig):
    """The paper network's fields (other defaults: ngf 32, exact chunking) plus the modulation width."""

    ngf: int = 32
    align_corners: bool = False
    film_hidden: int = 256


class _Film(nn.Module):
    """Query -> per-channel (1 + gamma, beta), zero at initialisation."""

    def __init__(self, hidden: int, channels: int):
        super().__init__()
        self.out = nn.Linear(hidden, 2 * channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.out(code).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return h * (1.0 + gamma) + beta


def _memory_format(weight: torch.Tensor) -> torch.memory_format:
    """The layout a module was moved to (``module.to(memory_format=...)``), read from one of its 4-d weights."""
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class FilmNet(MaskNetwork):
    kind = "film"
    config_class = FilmNetConfig

    def __init__(self, config: FilmNetConfig | None = None):
        super().__init__(config or FilmNetConfig())
        c = self.config
        channels = level_channels(c.ngf, c.depth)
        self.input_norm = nn.BatchNorm2d(1)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(c.depth):
            outer = 1 if level == 0 else channels[level - 1]
            inner = channels[level]
            out = c.k if level == 0 else channels[level - 1]
            innermost, outermost = level == c.depth - 1, level == 0
            down: list[nn.Module] = [nn.Conv2d(outer, inner, 4, stride=2, padding=1, bias=False)]
            if not outermost and not innermost:
                down.append(nn.BatchNorm2d(inner))
            self.down.append(nn.Sequential(*down))
            up: list[nn.Module] = [
                nn.ReLU(),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=c.align_corners),
                nn.Conv2d(inner if innermost else 2 * inner, out, 3, padding=1, bias=outermost),
            ]
            if not outermost:
                up.append(nn.BatchNorm2d(out))
            self.up.append(nn.Sequential(*up))
        self.activation = nn.LeakyReLU(0.2)
        self.query_code = nn.Sequential(nn.Linear(c.emb_dim, c.film_hidden), nn.ReLU())
        self.bottleneck_film = _Film(c.film_hidden, channels[-1])
        self.decoder_film = nn.ModuleList(_Film(c.film_hidden, channels[level - 1]) for level in range(1, c.depth))
        self.query_proj = nn.Linear(c.emb_dim, c.k)
        self.scale = nn.Parameter(torch.ones(c.k))
        self.bias = nn.Parameter(torch.zeros(1))
        self._initialise()

    def _initialise(self) -> None:
        init_like_paper([*self.down.modules(), *self.up.modules(), self.input_norm])
        nn.init.normal_(self.query_proj.weight, 0.0, LINEAR_INIT_STD)

    @property
    def time_multiple(self) -> int:
        return self.config.time_multiple

    def adapt_state(self, state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
        """A ``paper`` network's weights, or a narrower ``film`` network's (see :meth:`_widened`).

        A paper network's nested U-Net levels become this network's flat ones.

        Modulation weights are not in a paper checkpoint and keep their zero
        start, so the warm-started network computes exactly what the paper
        network did until training changes them.
        """
        if kind == "film":
            return self._widened(state)
        if kind != "paper":
            return super().adapt_state(state, kind)
        adapted = {}
        for name, value in state.items():
            if name.startswith("unet.body."):
                rest = name[len("unet.body."):]
                level = 0
                while rest.startswith("child."):
                    rest, level = rest[len("child."):], level + 1
                half, index, param = rest.split(".", 2)
                adapted[f"{half}.{level}.{index}.{param}"] = value
            else:
                adapted[name] = value
        own = self.state_dict()
        adapted.update({name: value for name, value in own.items() if name.startswith(("query_code.", "bottleneck_film.", "decoder_film."))})
        return adapted

    def _widened(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A ``film`` network's weights at this width; a narrower one grows and computes the same masks.

        Why: the CPU budget trained a small network to its plateau; a wider
        one should start where it stopped, not from scratch. Each old channel
        keeps its weights at its place in the wider layout (skip and FiLM
        concatenations put old channels at two offsets); a new channel gets
        this network's fresh initialisation, reads every input, and is read by
        no old channel (those weights are zero), so the masks are unchanged
        until training gives the new channels a say.
        """
        old_ngf = state["down.0.0.weight"].shape[0]
        c = self.config
        if old_ngf == c.ngf:
            return state
        if old_ngf > c.ngf:
            raise OmniSepError(f"a film network of ngf {c.ngf} cannot start from a wider one (ngf {old_ngf}).")
        old, new = level_channels(old_ngf, c.depth), level_channels(c.ngf, c.depth)

        def first(n: int) -> torch.Tensor:
            return torch.arange(n)

        def halves(level: int) -> torch.Tensor:
            """Old positions in a two-part layout [a (new width), b (new width)]."""
            return torch.cat([first(old[level]), new[level] + first(old[level])])

        places: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for level in range(c.depth):
            places[f"down.{level}.0"] = (first(old[level]), first(1 if level == 0 else old[level - 1]))
            places[f"down.{level}.1"] = (first(old[level]), None)
            out = first(c.k) if level == 0 else first(old[level - 1])
            places[f"up.{level}.2"] = (out, first(old[level]) if level == c.depth - 1 else halves(level))
            places[f"up.{level}.3"] = (out, None)
        places["bottleneck_film.out"] = (halves(c.depth - 1), None)
        for level in range(1, c.depth):
            places[f"decoder_film.{level - 1}.out"] = (halves(level - 1), None)

        grown = {}
        for name, fresh in self.state_dict().items():
            value = state[name]
            if value.shape == fresh.shape:
                grown[name] = value
                continue
            rows, columns = places[name.rsplit(".", 1)[0]]
            wide = fresh.clone()
            if columns is None or value.dim() < 2:
                wide[rows] = value
            else:
                wide[rows] = 0.0
                wide[rows.unsqueeze(1), columns] = value
            grown[name] = wide
        return grown

    @property
    def context_frames(self) -> int:
        return self.config.time_multiple

    def prepare(self, mag_warped: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The encoder half: the activated input of every level (the skips) and the bottleneck."""
        multiple = self.time_multiple
        if mag_warped.dim() != 4 or mag_warped.shape[2] % multiple or mag_warped.shape[3] % multiple:
            raise ValueError(f"film network needs [B, 1, H, W] with H and W multiples of {multiple}, got {tuple(mag_warped.shape)}")
        h = self.input_norm(torch.log(mag_warped.clamp_min(spectral.MAG_EPS)))
        skips = []
        for level, down in enumerate(self.down):
            if level > 0:
                h = self.activation(h)
            skips.append(h)
            h = down(h)
        return skips, h

    def mask_logits(self, prepared, queries: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = prepared
        self.check_queries(queries)
        batch, n_queries = queries.shape[:2]
        flat = queries.reshape(batch * n_queries, -1)
        code = self.query_code(flat)

        def per_query(x: torch.Tensor) -> torch.Tensor:
            return x.unsqueeze(1).expand(-1, n_queries, *x.shape[1:]).reshape(batch * n_queries, *x.shape[1:])

        # Repeating a map per query and the skip concatenation come out in the default layout; a network
        # prepared channels-last (CPU inference and training) would then convert every decoder level's input
        # inside the up-sampling and the convolution, which cost a third of the pass (benchmarks/rtf.py).
        layout = _memory_format(self.up[0][2].weight)
        h = self.bottleneck_film(per_query(bottleneck), code).contiguous(memory_format=layout)
        for level in range(self.config.depth - 1, -1, -1):
            y = self.up[level](h)
            if level == 0:
                h = y
                break
            h = torch.cat([per_query(skips[level]), self.decoder_film[level - 1](y, code)], dim=1)
            h = h.contiguous(memory_format=layout)
        features = h.reshape(batch, n_queries, *h.shape[1:])  # [B, Q, k, H, W]
        weights = torch.sigmoid(self.query_proj(queries)) * self.scale  # [B, Q, k]
        return torch.einsum("bqc,bqchw->bqhw", weights, features) + self.bias
