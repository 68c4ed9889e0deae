"""Query-Net v2 report: retrieval per modality and style, the Query-Aug table, SDRi per query form.

    python -m omnisep.querynet.report --corpus corpus --work runs/querynet --out docs/results/querynet-v2

(``scripts/querynet_v2_report.sh`` runs the whole chain.) Reads what
:mod:`omnisep.querynet.image_head` left in ``--work`` (picture features,
leave-one-source-out record, the v2 heads trained without the held-out
sources) and the shipped Query-Aug bank; writes ``summary.json`` and
``README.md`` tables into ``--out``.

SDRi: the bundled default checkpoint separates the first-of-every-k test
mixtures of the corpus once per mixture for all query forms together (the
U-Net does not see the query), scored like ``omnisep evaluate`` (the same
``score_job``, fast backend: the images-variant SDR of BSS-eval). Each form
is reported next to the text (class label) SDRi on the same mixtures, since
a style or an audio condition may exist only for some classes.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from omnisep import fileio
from omnisep.querynet import audio_query

HOLD_OUT = "gcompris-drawing"


def _head(path, modality="image"):
    from omnisep.encoders.heads import load_heads

    heads, info = load_heads(path)
    return heads[modality].eval(), info


def _top1(vectors, labels, anchor_labels, anchors, k=(1, 5)):
    from omnisep.querynet.image_head import top_k

    return top_k(torch.as_tensor(vectors), list(labels), list(anchor_labels), anchors) if len(labels) else None


# --------------------------------------------------------------------------- pictures


def picture_tables(work: Path, encoder, label_list, anchors, v1_heads, log=print) -> dict:
    """image->label top-1/top-5 per source: v1 head, v2 (held out), and derived styles of the held-out source."""
    from omnisep.querynet.augment import sketch
    from omnisep.querynet.image_head import load_or_compute_features, plain_rows
    from omnisep.querynet.pictures import collect_pictures, flatten

    loso = json.loads((work / "image-head-loso.json").read_text())
    copies, seed, hold_out = loso["copies"], loso["seed"], loso["hold_out"]
    pictures = collect_pictures(label_list, log=lambda *a: None)
    features, owners = load_or_compute_features(work, encoder, pictures, copies, seed, log)
    plain = features[plain_rows(owners)]
    v1 = v1_heads["image"]
    rows = {}
    with torch.no_grad():
        v1_all = v1(plain)
        for source, record in loso["leave_one_source_out"].items():
            chosen = [i for i, p in enumerate(pictures) if p.source == source]
            labels = [pictures[i].label for i in chosen]
            rows[source] = {
                "pictures": len(chosen),
                "classes": len(set(labels)),
                "v1": _top1(v1_all[chosen], labels, label_list, anchors),
                "v2_mlp_only": record["mlp"],
                "v2_bridge_only": record["bridge"],
                "v2": record["mix"],
            }
            if "recogniser" in loso:  # the picture recogniser (Lite2 + Lite0, heads averaged) without that source
                rows[source]["recogniser"] = loso["recogniser"]["leave_one_source_out"][source]["mix"]
        # Derived styles of the held-out source: pencil sketches and frames of a rendered video.
        held = [p for p in pictures if p.source == hold_out]
        v2_held, _ = _head(work / f"heads-v2-without-{hold_out}.safetensors")
        sketches = encoder.image_backbone_features([sketch(flatten(p.rgba)) for p in held])
        video = torch.stack([encoder.image_backbone_features(video_query_frames(p.rgba, work / "video")).mean(0) for p in held])
        labels = [p.label for p in held]
        for name, feats in ((f"{hold_out} as sketches", sketches), (f"{hold_out} as video frames", video)):
            rows[name] = {"pictures": len(held), "classes": len(set(labels)), "v1": _top1(v1(feats), labels, label_list, anchors),
                          "v2": _top1(v2_held(feats), labels, label_list, anchors)}
    return {"hold_out": hold_out, "chosen": loso["chosen"], "copies": copies, "per_source": rows,
            "recogniser": {k: v for k, v in loso.get("recogniser", {}).items() if k != "leave_one_source_out"},
            "unknown": unknown_picture_answers(work, encoder)}


def unknown_picture_answers(work: Path, encoder) -> dict:
    """Picture Query-Aug on Twemoji pictures of things outside the classes, recognised by what never saw Twemoji
    (the picture recogniser without it where image_head --recogniser made one, else the head v2 without it) with
    the calibration fitted for it: how many are said unknown (the label says so; the Separate-Net is given what the
    calibration's ``give`` says)."""
    from omnisep.encoders.recogniser import PictureRecogniser
    from omnisep.query_aug import ClassMatcher
    from omnisep.querynet.pictures import flatten, unknown_pictures

    pictures = unknown_pictures("twemoji")
    arrays = [flatten(p.rgba) for p in pictures]
    recogniser, calibration = work / "recogniser-without-twemoji.safetensors", work / "picture-calibration.json"
    with torch.no_grad():
        if recogniser.is_file():
            vectors, by = PictureRecogniser.load(recogniser, encoder=encoder).embed_image(arrays), "recogniser"
        else:
            head, _ = _head(work / "heads-v2-without-twemoji.safetensors")
            vectors, by = head(encoder.image_backbone_features(arrays)), "heads v2"
    if by == "heads v2" and (work / "picture-calibration-heads-v2.json").is_file():
        calibration = work / "picture-calibration-heads-v2.json"
    matcher = ClassMatcher.for_pictures(calibration=calibration)
    matches = matcher.match(vectors)
    return {"pictures": len(pictures), "said_unknown": sum(not m.known for m in matches), "recognised_by": by, "give": matcher.give,
            "examples": {p.name: m.describe() for p, m in zip(pictures, matches)}}


def video_query_frames(rgba: np.ndarray, folder: Path) -> list[np.ndarray]:
    """Render a 4 s clip of the picture panning and zooming on a grey backdrop (MPEG-4 at a low bitrate),
    then take what an image query of a video takes: the centre frames at 1 fps."""
    import av
    from PIL import Image

    from omnisep.images import centre_frames, video_frames
    from omnisep.querynet.pictures import flatten

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"clip-{zlib.crc32(rgba.tobytes()):08x}.mp4"
    if not path.is_file():
        picture = Image.fromarray(flatten(rgba))
        partial = path.with_suffix(".partial.mp4")
        with av.open(str(partial), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 320, 240, "yuv420p", 150_000
            for index in range(100):
                scale = 0.55 + 0.25 * index / 99
                size = int(240 * scale)
                canvas = Image.new("RGB", (320, 240), (90, 100, 110))
                canvas.paste(picture.resize((size, size)), (int(10 + 1.2 * index), (240 - size) // 2))
                for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        partial.replace(path)
    return centre_frames(video_frames(path, fps=1))


# --------------------------------------------------------------------------- words


def word_tables(encoder, label_list, log=print) -> dict:
    from omnisep.querynet.words import CONFIGS, ClassMatcher, read_queries

    matcher = ClassMatcher.load()
    anchors = F.normalize(encoder.embed_text(label_list), dim=-1)
    table = {}
    for name in ("descriptions-val.json", "descriptions-val-casual.json", "descriptions-heldout-test.json"):
        texts, labels = read_queries(CONFIGS / "querynet" / name)
        vectors = encoder.embed_text(texts)
        matches = matcher.match(vectors, texts)
        known = [i for i, label in enumerate(labels) if label is not None]
        unknown = [i for i, label in enumerate(labels) if label is None]
        nearest = (vectors @ anchors.T).argmax(1)
        table[name] = {
            "queries": len(known),
            "v1_nearest_label_top1": sum(label_list[nearest[i]] == labels[i] for i in known) / len(known),
            "v2_top1": sum(matches[i].label == labels[i] for i in known) / len(known),
            "v2_top1_of_answered": (sum(matches[i].label == labels[i] for i in known if matches[i].known)
                                    / max(1, sum(matches[i].known for i in known))),
            "v2_answered": sum(matches[i].known for i in known) / len(known),
            "out_of_vocabulary_queries": len(unknown),
            "out_of_vocabulary_said_unknown": sum(not matches[i].known for i in unknown),
            "examples": [{"text": texts[i], "truth": labels[i], "answer": matches[i].describe()} for i in (known[:3] + unknown[:2])],
        }
    return table


# --------------------------------------------------------------------------- audio


def audio_examples(test_set, label_list, rate):
    """One example per class: the loudest 4 s of the class's first test clip (mixtures with it as target are skipped)."""
    from omnisep.audio import load_audio

    chosen = {}
    for index, item in enumerate(test_set.items):
        if (item.split or "").lower() == "test" and item.label in label_list and item.label not in chosen:
            chosen[item.label] = index
    # A user's example is a few seconds long: the loudest 4 s of the clip (the conditions start from it).
    waves = {label: audio_query.loudest_window(load_audio(test_set.items[i].audio, sample_rate=rate, mono=True)[0][0], rate, 4.0)
             for label, i in chosen.items()}
    return chosen, waves


def audio_embeddings(encoder, waves: dict, rate: int) -> dict:
    """{(condition, variant): {label: vector}} with variant plain | prepared."""
    encoder.feature_memo = {}  # a prepared clip equal to its plain one (nothing to trim) runs the CNN once
    out = {}
    for condition in audio_query.CONDITIONS:
        for variant in ("plain", "prepared"):
            clips = []
            for label, wave in waves.items():
                clip = audio_query.degrade(wave, rate, condition, seed=zlib.crc32(label.encode()))
                clips.append(audio_query.prepare_example(clip, rate) if variant == "prepared" else clip)
            with torch.no_grad():
                vectors = encoder.heads["audio"](encoder.audio_backbone_features(clips))
            out[(condition, variant)] = dict(zip(waves, F.normalize(vectors, dim=-1)))
    encoder.feature_memo = None
    return out


def cached_audio_embeddings(work: Path, encoder, waves: dict, rate: int, ids: dict) -> dict:
    """:func:`audio_embeddings`, kept in ``work/audio-examples.safetensors`` (keyed by the example clips)."""
    from safetensors.torch import load_file

    from omnisep.encoders.weights import save_safetensors_atomic

    path, meta = work / "audio-examples.safetensors", work / "audio-examples.json"
    key = json.dumps([list(audio_query.CONDITIONS), sorted(ids.items()), "loudest 4 s"])
    if path.is_file() and meta.is_file() and meta.read_text() == key:
        tensors = load_file(str(path))
        return {(c, v): {label: tensors[f"{c}|{v}|{label}"] for label in waves} for c in audio_query.CONDITIONS
                for v in ("plain", "prepared")}
    out = audio_embeddings(encoder, waves, rate)
    work.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic({f"{c}|{v}|{label}": vector for (c, v), rows in out.items() for label, vector in rows.items()}, path)
    fileio.write_text(meta, key, fsync=False)
    return out


# --------------------------------------------------------------------------- SDRi


class _Zeros:
    """A stand-in query table: the dataset only needs the mixtures' audio here."""

    def __init__(self, dim):
        self.dim = dim

    def get(self, item_id):
        return torch.zeros(3, self.dim), torch.ones(3, dtype=torch.bool)


def sdri_rows(checkpoint, test_set, forms: dict, mixture_indices, log=print) -> dict:
    """Mean SDRi (and count) per query form over the mixtures where the form exists, each query separated
    as the API separates it (with the checkpoint's query contrast)."""
    from omnisep.data.mixing import MixtureDataset
    from omnisep.evaluation.auto_negative import _OnePass
    from omnisep.evaluation.metrics import SCORED_LENGTH
    from omnisep.evaluation.protocol.pool import score_job
    from omnisep.queries import QueryRows, background_query, contrast_terms
    from omnisep.states import contrast_strength, load_checkpoint, second_look_gate

    loaded = load_checkpoint(checkpoint)
    model = loaded.model.eval()
    strength = contrast_strength(loaded.config, checkpoint)
    background = background_query(loaded.bank.embeddings) if strength > 0 else None
    gate = second_look_gate(loaded.config, checkpoint)
    dataset = MixtureDataset(test_set.items, _Zeros(model.config.emb_dim), training=False, num_sources=2, mixtures=test_set.mixtures)
    keys = list(forms)
    scores = {key: [] for key in keys}
    started = time.perf_counter()
    for done, index in enumerate(mixture_indices):
        vectors = [forms[key](index) for key in keys]
        if all(v is None for v in vectors):
            continue
        example = dataset[index]
        # Forms that give the very same vector (an example the preparation left unchanged) are scored once.
        unique: dict[bytes, int] = {}
        slot = [None if v is None else unique.setdefault(v.float().numpy().tobytes(), len(unique)) for v in vectors]
        distinct = [None] * len(unique)
        for v, s_ in zip(vectors, slot):
            if s_ is not None:
                distinct[s_] = v.float()
        rows = QueryRows.from_terms([contrast_terms([(v, 1.0)], background, strength) for v in distinct], gate)
        estimates = _OnePass(model, example["mixture"]).separate(rows, SCORED_LENGTH)
        sources = example["sources"]
        job = {"index": index, "target": sources[0].numpy(), "interferer": sources[1:].sum(0).numpy(),
               "mixture": example["mixture"].numpy(), "estimates": estimates, "keys": list(range(len(distinct))),
               "unavailable": [], "backend": "fast", "length": SCORED_LENGTH}
        result = score_job(job)
        for key, s_ in zip(keys, slot):
            if s_ is not None and result["scores"].get(s_):
                scores[key].append((index, result["scores"][s_]["sdri"]))
        if (done + 1) % 20 == 0:
            log(f"  SDRi: {done + 1}/{len(mixture_indices)} mixtures, {time.perf_counter() - started:.0f} s")
    return scores


def picture_answer_table(answers) -> dict:
    """``{style: answered, top-1 when answered, top-1}`` from ``(style, Match, true label)`` rows."""
    table = {}
    for style in dict.fromkeys(style for style, _, _ in answers):
        rows = [(match, truth) for s_, match, truth in answers if s_ == style]
        answered = [(match, truth) for match, truth in rows if match.known]
        table[style] = {"queries": len(rows), "answered": len(answered) / len(rows),
                        "top1_of_answered": sum(m.label == t for m, t in answered) / max(1, len(answered)),
                        "top1": sum(m.label == t for m, t in rows) / len(rows)}
    return table


def paired(scores: dict, form: str, reference: str = "text") -> dict:
    ref = dict(scores[reference])
    rows = [(value, ref[index]) for index, value in scores[form] if index in ref]
    if not rows:
        return {"mixtures": 0}
    values, refs = np.array(rows).T
    return {"mixtures": len(rows), "sdri": float(values.mean()), "text_sdri_same_mixtures": float(refs.mean()),
            "gap_to_text": float(refs.mean() - values.mean())}


def _lite0(features):
    """The Lite0 part of a picture's features (``(lite0, [lite2, lite0])`` where recognisers are scored)."""
    return features[0] if isinstance(features, tuple) else features


def run(corpus: Path, work: Path, out: Path, checkpoint: Path, every: int = 4, log=print, audio_conditions: bool = True) -> dict:
    from omnisep.encoders.bundled import BundledEncoder
    from omnisep.data.mixtures import load_test_set
    from omnisep.images import load_image
    from omnisep.encoders.recogniser import LITE2_DIM, PictureRecogniser
    from omnisep.querynet.image_head import PICTURES_EVIDENCE, PICTURES_EVIDENCE_TOP, V1_HEADS, V2_HEADS
    from omnisep.querynet.pictures import collect_pictures, flatten
    from omnisep.querynet.words import ClassMatcher, read_queries, CONFIGS
    from omnisep.data.mixing import MixtureDataset
    from omnisep.scan import Verification, mixture_tags
    from omnisep.spectral import SAMPLE_RATE
    from omnisep.tagger import load_tagger

    torch.set_num_threads(1)  # on a shared CPU one thread per process runs these small batches fastest
    started = time.perf_counter()
    encoder = BundledEncoder(V1_HEADS)
    v1_heads = encoder.heads
    test_set = load_test_set(corpus / "mixtures_test.jsonl", corpus / "manifest.jsonl")
    label_list = sorted({item.label for item in test_set.items})
    anchors = F.normalize(encoder.embed_text(label_list), dim=-1)
    anchor = dict(zip(label_list, anchors))
    summary = {"machine": "2-core AMD EPYC VM, shared with other jobs", "checkpoint": str(checkpoint), "every": every}
    log("pictures")
    summary["pictures"] = picture_tables(work, encoder, label_list, anchors, v1_heads, log)
    hold_out = summary["pictures"]["hold_out"]
    log("words")
    summary["words"] = word_tables(encoder, label_list, log)
    rate = encoder.audio_sample_rate
    example_index, waves = audio_examples(test_set, label_list, rate)
    audio = {}
    if audio_conditions:
        log("audio examples")
        audio = cached_audio_embeddings(work, encoder, waves, rate, {label: test_set.items[i].id for label, i in example_index.items()})
    summary["audio_retrieval"] = {
        f"{c}/{v}": _top1(torch.stack(list(audio[(c, v)].values())), list(audio[(c, v)]), label_list, anchors)
        for c, v in audio
    }

    # -- query forms for the SDRi table
    mixture_audio = MixtureDataset(test_set.items, _Zeros(anchors.shape[1]), training=False, num_sources=2,
                                   mixtures=test_set.mixtures)  # the mixtures sdri_rows separates, for the tagger
    mixtures = list(range(0, len(test_set.mixtures), every))
    mixtures = [m for m in mixtures if test_set.mixtures[m][0] not in example_index.values()]
    target_label = lambda m: test_set.items[test_set.mixtures[m][0]].label  # noqa: E731
    heads_v2_twemoji, _ = _head(work / "heads-v2-without-twemoji.safetensors")
    heads_v2_held, _ = _head(work / f"heads-v2-without-{hold_out}.safetensors")
    heads_v2_all, _ = _head(work / "heads-v2-all.safetensors") if (work / "heads-v2-all.safetensors").is_file() else _head(V2_HEADS)
    # The picture recognisers (Lite2 + Lite0, heads averaged) without each style, where image_head --recogniser made them.
    recognisers = {name: PictureRecogniser.load(work / f"recogniser-without-{name}.safetensors", encoder=encoder)
                   for name in ("twemoji", hold_out) if (work / f"recogniser-without-{name}.safetensors").is_file()}

    def picture_features(array):
        """Lite0's features, or ``(Lite0's, [Lite2's, Lite0's])`` where recognisers are scored."""
        if not recognisers:
            return encoder.image_backbone_features([array])[0]
        both = next(iter(recognisers.values())).features([array])[0]
        return both[LITE2_DIM:], both

    corpus_pictures = {}
    for m in mixtures:
        item = test_set.items[test_set.mixtures[m][0]]
        if item.image and item.label not in corpus_pictures:
            corpus_pictures[item.label] = picture_features(load_image(item.image))
    held = [p for p in collect_pictures(label_list, sources=[hold_out], log=lambda *a: None)]
    held_features = {}
    for p in held:
        held_features.setdefault(p.label, []).append(picture_features(flatten(p.rgba)))
    texts, truths = read_queries(CONFIGS / "querynet" / "descriptions-heldout-test.json")
    by_class = {}
    for text, truth in zip(texts, truths):
        if truth is not None:
            by_class.setdefault(truth, []).append(text)
    chosen_text = {m: by_class[target_label(m)][m % len(by_class[target_label(m)])] for m in mixtures}
    description_vectors = dict(zip(sorted(set(chosen_text.values())), encoder.embed_text(sorted(set(chosen_text.values())))))
    matcher = ClassMatcher.load()
    v2_calibration = work / "picture-calibration-heads-v2.json"
    pictures_matcher = ClassMatcher.for_pictures(calibration=v2_calibration if v2_calibration.is_file() else work / "picture-calibration.json")
    recogniser_matcher = ClassMatcher.for_pictures(calibration=work / "picture-calibration.json") if recognisers else None
    weighing_matcher = None
    if recognisers:  # the same calibration with the shipped rule for what the mixture holds (image_head writes it)
        weighing_matcher = copy.copy(recogniser_matcher)
        weighing_matcher.evidence_power, weighing_matcher.evidence_top = PICTURES_EVIDENCE, PICTURES_EVIDENCE_TOP
    picture_answers = []

    def with_head(head, feats):
        with torch.no_grad():
            return F.normalize(head(feats[None])[0], dim=-1)

    def snapped(head, recogniser, feats, style, truth, presence=None):
        """What the API gives a picture query by default: the picture embedded by ``head`` (the model's heads),
        recognised by ``recogniser`` (the picture recogniser or the image head v2, here one that never saw the
        style) and snapped to the label's row when the picture matcher knows it; with ``presence`` (what the
        sound tagger hears in the mixture) weighed by it first, as separating a recording does."""
        lite0, both = feats if isinstance(feats, tuple) else (feats, None)
        if isinstance(recogniser, PictureRecogniser):
            match = (recogniser_matcher if presence is None else weighing_matcher).match(with_head(recogniser, both)[None],
                                                                                         presence=presence)[0]
            if presence is None:
                picture_answers.append((f"{style} (recogniser)", match, truth))
        else:
            match = pictures_matcher.match(with_head(recogniser, lite0)[None])[0]
            picture_answers.append((style, match, truth))
        given = match.given_vector(label_list, anchors)
        return with_head(head, lite0) if given is None else given

    tagging = Verification(None, anchors, listen=False, tagger=load_tagger(), labels=label_list)
    heard: dict[int, dict] = {}

    def holds(m) -> dict:
        """What the sound tagger hears in test mixture ``m`` (:func:`omnisep.scan.mixture_tags`)."""
        if m not in heard:
            heard[m] = mixture_tags(tagging, mixture_audio[m]["mixture"].numpy(), SAMPLE_RATE)
        return heard[m]

    def held_picture(head, recogniser=None, weighed=False):
        def form(m):
            options = held_features.get(target_label(m))
            if not options:
                return None
            feats = options[m % len(options)]
            if recogniser is None:
                return with_head(head, _lite0(feats))
            return snapped(head, recogniser, feats, hold_out, target_label(m), holds(m) if weighed else None)
        return form

    def corpus_picture(head, recogniser=None, weighed=False):
        def form(m):
            feats = corpus_pictures.get(target_label(m))
            if feats is None:
                return None
            if recogniser is None:
                return with_head(head, _lite0(feats))
            return snapped(head, recogniser, feats, "twemoji", target_label(m), holds(m) if weighed else None)
        return form

    def described(mode):
        def form(m):
            q = description_vectors[chosen_text[m]]
            if mode == "raw":
                return q
            if mode == "v1":  # eq. 5 with the checkpoint's bank: the nearest label embedding
                return anchors[int((q @ anchors.T).argmax())]
            match = matcher.match(q[None], [chosen_text[m]], holds(m) if mode == "v2-mixture" else None)[0]
            if mode in ("v2-given", "v2-mixture"):  # what the API gives (the bank's give; since 2026-12-07 the first two, weighed)
                given = match.given_vector(label_list, anchors)
                return q if given is None else given
            if mode == "v2-always" or match.known:
                return anchor[match.label]
            return q
        return form

    def audio_form(condition, variant):
        return lambda m: audio[(condition, variant)].get(target_label(m))

    forms = {
        "text": lambda m: anchor[target_label(m)],
        "image corpus test picture (Twemoji), heads v1": corpus_picture(v1_heads["image"]),
        "image corpus test picture (Twemoji), heads v2 without twemoji": corpus_picture(heads_v2_twemoji),
        "image corpus test picture (Twemoji), heads v2 trained on all sources": corpus_picture(heads_v2_all),
        "image corpus test picture (Twemoji), heads v1 + picture Query-Aug (recognised by heads v2 without twemoji)":
            corpus_picture(v1_heads["image"], heads_v2_twemoji),
        f"image held-out style ({hold_out}), heads v1": held_picture(v1_heads["image"]),
        f"image held-out style ({hold_out}), heads v2 without it": held_picture(heads_v2_held),
        f"image held-out style ({hold_out}), heads v1 + picture Query-Aug (recognised by heads v2 without it)":
            held_picture(v1_heads["image"], heads_v2_held),
        **({"image corpus test picture (Twemoji), heads v1 + picture Query-Aug (recognised by the recogniser without twemoji)":
            corpus_picture(v1_heads["image"], recognisers["twemoji"])} if "twemoji" in recognisers else {}),
        **({f"image held-out style ({hold_out}), heads v1 + picture Query-Aug (recognised by the recogniser without it)":
            held_picture(v1_heads["image"], recognisers[hold_out])} if hold_out in recognisers else {}),
        **({"image corpus test picture (Twemoji), heads v1 + picture Query-Aug weighed by the mixture (recogniser without "
            "twemoji)": corpus_picture(v1_heads["image"], recognisers["twemoji"], weighed=True)} if "twemoji" in recognisers else {}),
        **({f"image held-out style ({hold_out}), heads v1 + picture Query-Aug weighed by the mixture (recogniser without it)":
            held_picture(v1_heads["image"], recognisers[hold_out], weighed=True)} if hold_out in recognisers else {}),
        "free text (held-out description)": described("raw"),
        "free text + Query-Aug v1 (nearest label)": described("v1"),
        "free text + Query-Aug v2 (rich bank, unknown left as is)": described("v2"),
        "free text + Query-Aug v2 (rich bank, always snapped)": described("v2-always"),
        "free text + Query-Aug v2 (rich bank, first two classes blended by probability)": described("v2-given"),
        "free text + Query-Aug v2 weighed by the mixture (as separating a recording gives it)": described("v2-mixture"),
    }
    for condition, variant in audio:
        forms[f"audio example {condition}, {variant}"] = audio_form(condition, variant)
    log(f"SDRi of {len(forms)} query forms on {len(mixtures)} test mixtures")
    scores = sdri_rows(checkpoint, test_set, forms, mixtures, log)
    summary["sdri"] = {form: paired(scores, form) for form in forms}
    summary["picture_query_aug"] = picture_answer_table(picture_answers)
    summary["picture_give"] = f"heads v2 `{pictures_matcher.give}`" + (f", recogniser `{recogniser_matcher.give}`" if recogniser_matcher else "")
    gap = summary["sdri"]["free text (held-out description)"]
    summary["query_aug_gap_closed"] = {
        form: (summary["sdri"][form]["sdri"] - gap["sdri"]) / max(1e-9, gap["text_sdri_same_mixtures"] - gap["sdri"])
        for form in forms if form.startswith("free text +")
    }
    summary["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    fileio.write_text(out / "summary.json", json.dumps(summary, indent=1, default=str), fsync=False)
    fileio.write_text(out / "README.md", markdown(summary), fsync=False)
    log(f"wrote {out}/summary.json and README.md")
    return summary


def _f(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(s: dict) -> str:
    p = s["pictures"]
    lines = ["# Query-Net v2 results", "",
             f"Regenerated by `scripts/querynet_v2_report.sh` on a {s['machine']}; numbers below are copied from `summary.json`.", "",
             "## Pictures: image -> label (40 label anchors), each source held out of its own head's training", "",
             f"Bridge mix chosen without `{p['hold_out']}`: weight {p['chosen']['bridge_weight']}, temperature "
             f"{p['chosen']['bridge_temperature']}; {p['copies']} augmented copies per training picture.", "",
             "| style (source) | pictures | classes | v1 top-1 | v2 MLP only | v2 bridge only | **v2 top-1** | v2 top-5 | recogniser top-1 | recogniser top-5 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in p["per_source"].items():
        lines.append(f"| {name} | {row['pictures']} | {row['classes']} | {_f(row['v1']['top1'])} | "
                     f"{_f(row.get('v2_mlp_only', {}).get('top1'))} | {_f(row.get('v2_bridge_only', {}).get('top1'))} | "
                     f"**{_f(row['v2']['top1'])}** | {_f(row['v2']['top5'])} | "
                     f"{_f(row.get('recogniser', {}).get('top1'))} | {_f(row.get('recogniser', {}).get('top5'))} |")
    if p.get("recogniser"):
        r = p["recogniser"]
        lines += ["", f"Picture recogniser (picture Query-Aug's recognition; `omnisep.encoders.recogniser`): EfficientNet-Lite2 "
                  f"and -Lite0 features side by side, {r['seeds']} heads averaged, Lite2's ImageNet classifier as the bridge "
                  f"(weight {r['chosen']['bridge_weight']}, temperature {r['chosen']['bridge_temperature']}, chosen without "
                  f"`{p['hold_out']}`: mean top-1 of the other sources {r['others_mean_top1']:.3f})."]
    if p.get("unknown"):
        u = p["unknown"]
        lines += ["", f"Picture Query-Aug on {u['pictures']} Twemoji pictures of things outside the classes (pizza, "
                  f"bicycle, ...), recognised by the {u.get('recognised_by', 'heads v2')} without Twemoji: {u['said_unknown']} said unknown "
                  + ("(left unsnapped), the rest snapped to the nearest class." if u.get("give", "snap-known") == "snap-known" else
                     f"(their label says so); the Separate-Net is given `{u['give']}` (omnisep.query_aug.GIVE) for every one.")]
    lines += ["", "## Words: description -> label", "",
              "| file | queries | v1 nearest label top-1 | v2 top-1 | v2 answered (not unknown) | v2 top-1 when answered | out-of-vocabulary said unknown |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in s["words"].items():
        lines.append(f"| {name} | {row['queries']} | {_f(row['v1_nearest_label_top1'])} | {_f(row['v2_top1'])} | {_f(row['v2_answered'])} | "
                     f"{_f(row['v2_top1_of_answered'])} | {row['out_of_vocabulary_said_unknown']}/{row['out_of_vocabulary_queries']} |")
    lines += ["", "## Audio examples: audio -> label top-1 (the loudest 4 s of one test clip per class, 40 examples)", "",
              "| condition | plain | prepared (trim + loop short examples) |", "|---|---:|---:|"]
    for condition in audio_query.CONDITIONS:
        a, b = s["audio_retrieval"].get(f"{condition}/plain"), s["audio_retrieval"].get(f"{condition}/prepared")
        if a is None:
            continue
        lines.append(f"| {condition} | {_f(a['top1'] if a else None)} | {_f(b['top1'] if b else None)} |")
    lines += ["", f"## SDRi per query form (checkpoint `{s['checkpoint']}`, paired with the text query on the same mixtures)", "",
              f"Test mixtures: {'all' if s.get('every', 4) == 1 else 'every %dth' % s.get('every', 4)} (`--every {s.get('every', 4)}`), "
              "but those whose target is the clip the audio examples are cut from.", "",
              "| query form | mixtures | SDRi (dB) | text SDRi, same mixtures | gap to text |", "|---|---:|---:|---:|---:|"]
    for form, row in s["sdri"].items():
        if row.get("mixtures"):
            lines.append(f"| {form} | {row['mixtures']} | {_f(row['sdri'], 2)} | {_f(row['text_sdri_same_mixtures'], 2)} | {_f(row['gap_to_text'], 2)} |")
    if s.get("picture_query_aug"):
        lines += ["", "Picture Query-Aug on the queries of the SDRi rows (one per mixture; recognised by a head v2, or in the "
                  "rows marked (recogniser) by the picture recogniser, that never saw the style; the Separate-Net is given what "
                  f"each calibration gives, omnisep.query_aug.GIVE: {s.get('picture_give', 'snap-known, unknown pictures left as they are')}):", "",
                  "| style | queries | answered (not unknown) | top-1 when answered | top-1 |", "|---|---:|---:|---:|---:|"]
        for style, row in s["picture_query_aug"].items():
            lines.append(f"| {style} | {row['queries']} | {_f(row['answered'])} | {_f(row['top1_of_answered'])} | {_f(row['top1'])} |")
    lines += ["", "Query-Aug: share of the free-text -> class-name gap closed:", ""]
    for form, value in s["query_aug_gap_closed"].items():
        lines.append(f"- {form}: {100 * value:.0f} %")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    import click

    @click.command()
    @click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=Path("corpus"), show_default=True)
    @click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/querynet"), show_default=True)
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/results/querynet-v2"), show_default=True)
    @click.option("--checkpoint", type=click.Path(path_type=Path), default=Path("src/omnisep/pretrained/v2"), show_default=True,
                  help="The Separate-Net the SDRi rows use (the bundled default).")
    @click.option("--every", default=4, show_default=True, help="Score every k-th test mixture.")
    @click.option("--no-audio", is_flag=True, help="Leave out the audio example conditions (the slowest part).")
    def command(corpus, work, out, checkpoint, every, no_audio):
        run(corpus, work, out, checkpoint, every, log=click.echo, audio_conditions=not no_audio)

    command.main(args=argv, standalone_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
