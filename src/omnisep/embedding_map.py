"""The paper's Fig. 3: text, image, audio and composed query embeddings in two dimensions.

Points come from one split of a manifest (the test clips by default), as the
Separate-Net receives them: one **text** point per class label (and per
free-form description, when given), one **image** point per distinct
picture, one **audio** point per clip, and one **composed** point per clip
(Query-Mixup: U(0, 1) weights over the clip's available modalities, divided
by their sum, as in training). The picture is a UMAP (``umap-learn``) or
t-SNE (scikit-learn) projection of the cosine geometry.

Beside the picture, numbers that say what it shows, all in the full space:

* **kNN accuracy** per modality: leave-one-out k-nearest-neighbour (cosine)
  class vote among the points of that modality (how separable the classes are);
* **zero-shot accuracy**: the share of image/audio/composed points whose
  nearest class-label text is their own class (what Query-Aug relies on);
* **cross-modal cosine**: mean cosine between a class's points of two
  modalities, against the mean over pairs of different classes (the
  modality gap: the paper's point is that same-class points of different
  modalities are far apart).

For the bundled encoder the same numbers are computed *before the heads*:
image and audio backbone features through the heads' seeded initial weights
(untrained projections into the text space), against the trained heads.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from omnisep.errors import OmniSepError, describe

MODALITIES = ("text", "image", "audio", "composed")
MARKERS = {"text": "*", "image": "s", "audio": "o", "composed": "^"}
METHODS = ("umap", "tsne")
DEFAULT_K = 5


@dataclasses.dataclass
class MapPoints:
    vectors: np.ndarray  # [N, D] L2-normalised
    classes: list[str]
    modalities: list[str]
    sources: list[str]  # the file or text each point comes from

    def __len__(self) -> int:
        return len(self.classes)

    def subset(self, modality: str) -> "MapPoints":
        keep = [i for i, m in enumerate(self.modalities) if m == modality]
        return MapPoints(self.vectors[keep], [self.classes[i] for i in keep], [modality] * len(keep), [self.sources[i] for i in keep])


def _normalised(x) -> np.ndarray:
    return F.normalize(torch.as_tensor(np.asarray(x), dtype=torch.float32), dim=-1).numpy()


def collect_points(items, table, descriptions: dict | None = None, encoder=None, seed: int = 0) -> MapPoints:
    """Points of ``items`` (manifest items) from a :class:`omnisep.data.mixing.QueryTable`.

    ``descriptions`` (``{label: [text, ...]}``) adds free-form text points,
    embedded with ``encoder``.
    """
    from omnisep.data.mixing import compose_queries

    vectors, classes, modalities, sources = [], [], [], []

    def add(vector, label, modality, source):
        vectors.append(np.asarray(vector, np.float32))
        classes.append(label)
        modalities.append(modality)
        sources.append(source)

    generator = torch.Generator().manual_seed(seed)
    seen_text, seen_images = set(), set()
    for item in items:
        rows, available = table.get(item.id)
        if available[0] and item.label not in seen_text:
            seen_text.add(item.label)
            add(rows[0], item.label, "text", item.label)
        if available[1]:
            image = str(getattr(item, "image", None) or getattr(item, "video", None) or item.id)
            if image not in seen_images:
                seen_images.add(image)
                add(rows[1], item.label, "image", Path(image).name)
        if available[2]:
            add(rows[2], item.label, "audio", Path(str(item.audio)).name)
        composed = compose_queries(rows[None], available[None], "mixup", generator)[0]
        add(composed, item.label, "composed", Path(str(item.audio)).name)
    if descriptions:
        if encoder is None:
            raise ValueError("free-form descriptions need an encoder")
        texts = [(label, text) for label in sorted(seen_text) for text in descriptions.get(label, [])]
        if texts:
            for (label, text), vector in zip(texts, encoder.embed_text([t for _, t in texts])):
                add(vector, label, "text", text)
    if not vectors:
        raise OmniSepError("no embedding to map: the chosen items have no text, image or audio embedding")
    return MapPoints(_normalised(np.stack(vectors)), classes, modalities, sources)


# -- numbers -----------------------------------------------------------------------------------


def knn_accuracy(vectors: np.ndarray, classes: Sequence[str], k: int = DEFAULT_K) -> float | None:
    """Leave-one-out k-NN (cosine) accuracy; ties go to the class of the nearest among them.

    None when there are fewer than two points of a class anywhere (nothing to vote with).
    """
    classes = np.asarray(classes)
    n = len(classes)
    if n < 2 or Counter(classes.tolist()).most_common(1)[0][1] < 2:
        return None
    x = _normalised(vectors)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, n - 1)
    neighbours = np.argsort(-similarity, axis=1)[:, :k]
    hits = 0
    for i in range(n):
        votes = Counter(classes[neighbours[i]].tolist())
        top = max(votes.values())
        winner = next(classes[j] for j in neighbours[i] if votes[classes[j]] == top)  # nearest among the tied
        hits += winner == classes[i]
    return hits / n


def zero_shot_accuracy(points: MapPoints, modality: str) -> float | None:
    """Share of a modality's points whose nearest class-label text point is their own class."""
    text = [i for i, (m, s, c) in enumerate(zip(points.modalities, points.sources, points.classes)) if m == "text" and s == c]
    rows = [i for i, m in enumerate(points.modalities) if m == modality]
    if not text or not rows:
        return None
    nearest = np.argmax(points.vectors[rows] @ points.vectors[text].T, axis=1)
    return float(np.mean([points.classes[text[j]] == points.classes[i] for i, j in zip(rows, nearest)]))


def cross_modal_cosine(points: MapPoints, first: str, second: str) -> dict | None:
    """Mean cosine of (first, second) point pairs of the same class, and of different classes."""
    a = [i for i, m in enumerate(points.modalities) if m == first]
    b = [i for i, m in enumerate(points.modalities) if m == second]
    if not a or not b:
        return None
    similarity = points.vectors[a] @ points.vectors[b].T
    same = np.asarray(points.classes)[a][:, None] == np.asarray(points.classes)[b][None, :]
    if not same.any() or same.all():
        return None
    return {"same_class": float(similarity[same].mean()), "other_class": float(similarity[~same].mean()),
            "gap": float(similarity[same].mean() - similarity[~same].mean())}


def measure(points: MapPoints, k: int = DEFAULT_K) -> dict:
    """Every number of the module docstring for one set of points."""
    present = [m for m in MODALITIES if m in points.modalities]
    out = {"points": dict(Counter(points.modalities)), "classes": len(set(points.classes)), "k": k}
    out["knn_accuracy"] = {m: knn_accuracy(points.subset(m).vectors, points.subset(m).classes, k) for m in present}
    out["knn_accuracy_all_modalities"] = knn_accuracy(points.vectors, points.classes, k)
    out["zero_shot_accuracy"] = {m: zero_shot_accuracy(points, m) for m in present if m != "text"}
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1 :]]
    out["cross_modal_cosine"] = {f"{a}-{b}": cross_modal_cosine(points, a, b) for a, b in pairs}
    out["chance_accuracy"] = 1.0 / max(1, len(set(points.classes)))
    return out


# -- before the heads (bundled encoder) ----------------------------------------------------------


def head_comparison(items, encoder, table, k: int = DEFAULT_K) -> dict:
    """The bundled encoder's numbers with untrained (seeded initial) heads and with its trained heads.

    Both use the same backbone features of ``items`` (images de-duplicated);
    the text side (MiniLM) has no head and is the same in both. Also reports
    kNN accuracy in the backbones' own feature spaces (no head at all).
    """
    from omnisep.data import cache as cache_module
    from omnisep.data.mixing import load_clip
    from omnisep.encoders.heads import HeadConfig, build_heads
    from omnisep.spectral import SAMPLE_RATE

    if not hasattr(encoder, "audio_backbone_features"):
        raise OmniSepError(f"the '{encoder.name}' encoder has no projection heads to compare")
    from omnisep.audio import resample

    labels = sorted({item.label for item in items})
    text = dict(zip(labels, _normalised(encoder.embed_text(labels))))
    images, image_classes, seen = [], [], set()
    for item in items:
        key = str(getattr(item, "image", None) or getattr(item, "video", None) or "")
        if key and key not in seen:
            seen.add(key)
            frames = cache_module.item_inputs(item, "image")
            if frames:
                images.append(frames[0])
                image_classes.append(item.label)
    clips = [resample(load_clip(item.audio), SAMPLE_RATE, encoder.audio_sample_rate) for item in items]
    audio_classes = [item.label for item in items]
    with torch.no_grad():
        features = {
            "image": encoder.image_backbone_features(images) if images else None,
            "audio": encoder.audio_backbone_features(clips),
        }
    trained = encoder.heads
    untrained = build_heads({m: HeadConfig(h.config.in_dim, h.config.out_dim, h.config.hidden) for m, h in trained.items()}).eval()
    result = {"backbone_knn_accuracy": {}, "untrained_heads": None, "trained_heads": None}
    for modality, feats in features.items():
        if feats is not None:
            classes = image_classes if modality == "image" else audio_classes
            result["backbone_knn_accuracy"][modality] = knn_accuracy(feats.numpy(), classes, k)
    for name, heads in (("untrained_heads", untrained), ("trained_heads", trained)):
        vectors, classes, modalities, sources = [], [], [], []
        for label, vector in text.items():
            vectors.append(vector), classes.append(label), modalities.append("text"), sources.append(label)
        with torch.no_grad():
            for modality, feats in features.items():
                if feats is None:
                    continue
                projected = heads[modality](feats.to(torch.float32))
                owners = image_classes if modality == "image" else audio_classes
                for vector, label in zip(projected.numpy(), owners):
                    vectors.append(vector), classes.append(label), modalities.append(modality), sources.append(label)
        points = MapPoints(_normalised(np.stack(vectors)), classes, modalities, sources)
        numbers = measure(points, k)
        result[name] = {key: numbers[key] for key in ("knn_accuracy", "zero_shot_accuracy", "cross_modal_cosine")}
    return result


# -- projection and pictures ---------------------------------------------------------------------


def project(vectors: np.ndarray, method: str = "umap", seed: int = 0, neighbours: int = 15) -> np.ndarray:
    """``[N, 2]`` coordinates of the cosine geometry."""
    if method not in METHODS:
        raise OmniSepError(f"unknown projection {method!r}; choose {' or '.join(METHODS)}")
    n = len(vectors)
    if n < 4:
        raise OmniSepError(f"a map needs at least 4 points, got {n}")
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise OmniSepError("the UMAP projection needs the umap-learn package: pip install 'omnisep[map]', or use --method tsne") from None
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": the seed is what we want
            reducer = umap.UMAP(n_neighbors=min(neighbours, n - 1), metric="cosine", random_state=seed, init="spectral" if n > 10 else "random")
            return np.asarray(reducer.fit_transform(vectors), np.float64)
    from sklearn.manifold import TSNE

    return np.asarray(
        TSNE(n_components=2, metric="cosine", perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(vectors),
        np.float64,
    )


def _class_colours(classes: Sequence[str]) -> dict[str, str]:
    import matplotlib

    names = sorted(set(classes))
    cmap = matplotlib.colormaps["tab20"] if len(names) <= 20 else matplotlib.colormaps["gist_ncar"]
    count = max(1, len(names) - (0 if len(names) <= 20 else -2))
    colours = {}
    for index, name in enumerate(names):
        r, g, b, _ = cmap(index % 20 if len(names) <= 20 else index / count)
        colours[name] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    return colours


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise OmniSepError(f"cannot write {describe(path)}: its folder does not exist")
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temp)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a result file is not
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


def plot_png(points: MapPoints, xy: np.ndarray, path, title: str = "", numbers: dict | None = None) -> Path:
    """Fig. 3: one panel of every point (colour = class, marker = modality) and one per modality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours = _class_colours(points.classes)
    present = [m for m in MODALITIES if m in points.modalities]
    fig = plt.figure(figsize=(15, 8.5), dpi=110)
    grid = fig.add_gridspec(2, 4, width_ratios=[2.2, 1, 1, 0.9])
    main = fig.add_subplot(grid[:, 0])
    small = [fig.add_subplot(grid[r, c]) for r in range(2) for c in (1, 2)]
    classes = np.asarray(points.classes)
    modalities = np.asarray(points.modalities)
    for modality in present:
        keep = modalities == modality
        size = 70 if modality == "text" else 16
        main.scatter(xy[keep, 0], xy[keep, 1], c=[colours[c] for c in classes[keep]], marker=MARKERS[modality], s=size,
                     alpha=0.85 if modality == "text" else 0.6, linewidths=0.4 if modality == "text" else 0, edgecolors="black")
    main.set_title(title or "query embeddings", fontsize=11)
    main.set_xticks([]), main.set_yticks([])
    for ax, modality in zip(small, MODALITIES):
        ax.scatter(xy[:, 0], xy[:, 1], c="#e4e4e4", s=4, marker=".")
        keep = modalities == modality
        ax.scatter(xy[keep, 0], xy[keep, 1], c=[colours[c] for c in classes[keep]], marker=MARKERS[modality], s=14, alpha=0.8)
        label = modality
        if numbers and numbers.get("knn_accuracy", {}).get(modality) is not None:
            label += f"  (kNN acc. {numbers['knn_accuracy'][modality]:.2f})"
        ax.set_title(label, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    legend_ax = fig.add_subplot(grid[:, 3])
    legend_ax.axis("off")
    handles = [Line2D([], [], marker=MARKERS[m], ls="", color="black", label=m) for m in present]
    handles += [Line2D([], [], marker="o", ls="", color=colours[c], label=c) for c in sorted(colours)]
    legend_ax.legend(handles=handles, loc="center left", fontsize=7, frameon=False, ncol=1 if len(handles) < 46 else 2)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    try:
        return _atomic(Path(path), lambda temp: fig.savefig(temp, format="png"))
    finally:
        plt.close(fig)


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #222; }}
#wrap {{ display: flex; gap: 16px; align-items: flex-start; }}
svg {{ border: 1px solid #ccc; background: #fff; }}
.pt {{ stroke: #333; stroke-width: 0.3; }}
.pt.dim {{ opacity: 0.06; }}
#legend {{ font-size: 12px; max-height: 760px; overflow-y: auto; }}
#legend div {{ cursor: pointer; padding: 1px 4px; }}
#legend div.off {{ opacity: 0.35; }}
#tip {{ position: fixed; pointer-events: none; background: #222; color: #fff; padding: 4px 7px; font-size: 12px;
        border-radius: 3px; display: none; }}
table {{ border-collapse: collapse; font-size: 13px; margin-top: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
</style></head><body>
<h2>{title}</h2>
<p>Hover a point for its class, modality and source; click a class or a modality in the legend to show only it
(click again to show all). Self-contained: no network access.</p>
<div id="wrap">
<svg id="map" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{shapes}</svg>
<div id="legend">{legend}</div>
</div>
<div id="tip"></div>
{table}
<script id="points" type="application/json">{data}</script>
<script>
(function () {{
  var points = JSON.parse(document.getElementById("points").textContent);
  var shapes = document.querySelectorAll("#map .pt");
  var tip = document.getElementById("tip");
  var filter = null;
  shapes.forEach(function (shape, i) {{
    shape.addEventListener("mouseenter", function () {{
      var p = points[i];
      tip.textContent = p[0] + " | " + p[1] + " | " + p[2];
      tip.style.display = "block";
    }});
    shape.addEventListener("mousemove", function (e) {{
      tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
    }});
    shape.addEventListener("mouseleave", function () {{ tip.style.display = "none"; }});
  }});
  document.querySelectorAll("#legend div").forEach(function (entry) {{
    entry.addEventListener("click", function () {{
      var key = entry.getAttribute("data-key"), kind = entry.getAttribute("data-kind");
      filter = (filter && filter.key === key) ? null : {{key: key, kind: kind}};
      document.querySelectorAll("#legend div").forEach(function (other) {{
        other.classList.toggle("off", filter !== null && other !== entry);
      }});
      shapes.forEach(function (shape, i) {{
        var p = points[i];
        var show = filter === null || (filter.kind === "class" ? p[0] === filter.key : p[1] === filter.key);
        shape.classList.toggle("dim", !show);
      }});
    }});
  }});
}})();
</script>
</body></html>
"""

SVG_SHAPES = {
    "text": lambda x, y, c: f'<polygon class="pt" points="{_star(x, y, 7)}" fill="{c}"/>',
    "image": lambda x, y, c: f'<rect class="pt" x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{c}"/>',
    "audio": lambda x, y, c: f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{c}"/>',
    "composed": lambda x, y, c: f'<polygon class="pt" points="{x:.1f},{y - 4:.1f} {x + 4:.1f},{y + 3.5:.1f} {x - 4:.1f},{y + 3.5:.1f}" fill="{c}"/>',
}


def _star(x: float, y: float, r: float) -> str:
    corners = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = np.pi / 2 + i * np.pi / 5
        corners.append(f"{x + radius * np.cos(angle):.1f},{y - radius * np.sin(angle):.1f}")
    return " ".join(corners)


def write_html(points: MapPoints, xy: np.ndarray, path, title: str = "query embeddings", numbers: dict | None = None,
               width: int = 900, height: int = 760) -> Path:
    """One HTML file with an inline SVG, an inline script for hover and filtering, and the numbers' table."""
    colours = _class_colours(points.classes)
    margin = 20
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    px = margin + (xy[:, 0] - lo[0]) / span[0] * (width - 2 * margin)
    py = margin + (1 - (xy[:, 1] - lo[1]) / span[1]) * (height - 2 * margin)
    order = sorted(range(len(points)), key=lambda i: MODALITIES.index(points.modalities[i]) if points.modalities[i] in MODALITIES else 0)
    # Text points last so that they sit on top; the data array follows the drawing order.
    order = [i for i in order if points.modalities[i] != "text"] + [i for i in order if points.modalities[i] == "text"]
    shapes = "".join(SVG_SHAPES[points.modalities[i]](px[i], py[i], colours[points.classes[i]]) for i in order)
    data = [[points.classes[i], points.modalities[i], points.sources[i]] for i in order]
    legend = "".join(
        f'<div data-kind="modality" data-key="{html.escape(m)}"><b>{html.escape(m)}</b> {_legend_marker(m)}</div>'
        for m in MODALITIES if m in points.modalities
    )
    legend += "".join(
        f'<div data-kind="class" data-key="{html.escape(c)}"><span style="color:{colours[c]}">&#9679;</span> {html.escape(c)}</div>'
        for c in sorted(colours)
    )
    table = _numbers_table(numbers) if numbers else ""
    text = HTML_TEMPLATE.format(
        title=html.escape(title), width=width, height=height, shapes=shapes, legend=legend, table=table,
        data=json.dumps(data).replace("</", "<\\/"),
    )
    return _atomic(Path(path), lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def _legend_marker(modality: str) -> str:
    return {"text": "&#9733;", "image": "&#9632;", "audio": "&#9679;", "composed": "&#9650;"}[modality]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _numbers_table(numbers: dict) -> str:
    rows = ["<table><tr><th>modality</th><th>points</th><th>kNN accuracy</th><th>zero-shot accuracy</th></tr>"]
    for modality, count in numbers["points"].items():
        rows.append(
            f"<tr><td>{html.escape(modality)}</td><td>{count}</td><td>{_fmt(numbers['knn_accuracy'].get(modality))}</td>"
            f"<td>{_fmt(numbers['zero_shot_accuracy'].get(modality))}</td></tr>"
        )
    rows.append("</table><table><tr><th>pair</th><th>cosine, same class</th><th>other classes</th><th>gap</th></tr>")
    for pair, values in numbers["cross_modal_cosine"].items():
        if values:
            rows.append(f"<tr><td>{pair}</td><td>{values['same_class']:.3f}</td><td>{values['other_class']:.3f}</td><td>{values['gap']:.3f}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def numbers_markdown(numbers: dict, heads: dict | None = None) -> str:
    """The numbers as Markdown tables (for docs/results/)."""
    lines = [
        f"{numbers['classes']} classes; chance accuracy {numbers['chance_accuracy']:.3f}; k = {numbers['k']} (leave-one-out, cosine)",
        "",
        "| modality | points | kNN accuracy | zero-shot accuracy (nearest label text) |",
        "|---|---|---|---|",
    ]
    for modality, count in numbers["points"].items():
        lines.append(f"| {modality} | {count} | {_fmt(numbers['knn_accuracy'].get(modality))} | {_fmt(numbers['zero_shot_accuracy'].get(modality))} |")
    lines.append(f"| all together | {sum(numbers['points'].values())} | {_fmt(numbers['knn_accuracy_all_modalities'])} | |")
    lines += ["", "| modalities | mean cosine, same class | mean cosine, other classes | gap |", "|---|---|---|---|"]
    for pair, values in numbers["cross_modal_cosine"].items():
        if values:
            lines.append(f"| {pair} | {values['same_class']:.3f} | {values['other_class']:.3f} | {values['gap']:+.3f} |")
    if heads:
        clips = heads.get("clips_per_class")
        lines += ["", "Before and after the bundled encoder's projection heads (same backbone features"
                  + (f"; the first {clips} clips of each class, kNN with k = {min(numbers['k'], clips - 1)}" if clips else "") + "):", ""]
        lines += ["| | backbone features (no head) | untrained heads | trained heads |", "|---|---|---|---|"]
        for modality in ("image", "audio"):
            lines.append(
                f"| kNN accuracy, {modality} | {_fmt(heads['backbone_knn_accuracy'].get(modality))} "
                f"| {_fmt(heads['untrained_heads']['knn_accuracy'].get(modality))} | {_fmt(heads['trained_heads']['knn_accuracy'].get(modality))} |"
            )
        for modality in ("image", "audio"):
            lines.append(
                f"| zero-shot accuracy, {modality} | | {_fmt(heads['untrained_heads']['zero_shot_accuracy'].get(modality))} "
                f"| {_fmt(heads['trained_heads']['zero_shot_accuracy'].get(modality))} |"
            )
        for pair in ("text-image", "text-audio", "image-audio"):
            before, after = heads["untrained_heads"]["cross_modal_cosine"].get(pair), heads["trained_heads"]["cross_modal_cosine"].get(pair)
            if before and after:
                lines.append(
                    f"| cosine same class / other classes, {pair} | | {before['same_class']:.3f} / {before['other_class']:.3f} "
                    f"| {after['same_class']:.3f} / {after['other_class']:.3f} |"
                )
    return "\n".join(lines) + "\n"
