"""Picture sources: Iconify SVG rendering, flattening, the strong augmentation and the sketch style."""

from __future__ import annotations

import numpy as np

from omnisep.querynet.augment import augment_picture, sketch
from omnisep.querynet.pictures import EMOJI_NAMES, ICON_NAMES, SOURCES, flatten, iconify_svg, render_svg

ICONS = {
    "width": 24, "height": 24,
    "icons": {"dog": {"body": '<rect x="6" y="6" width="12" height="12" fill="currentColor"/>'}},
    "aliases": {"puppy": {"parent": "dog"}},
}


def test_iconify_icons_render_black_on_transparency():
    svg = iconify_svg(ICONS, "puppy")  # aliases are followed
    assert svg is not None and 'viewBox="0 0 24 24"' in svg
    assert iconify_svg(ICONS, "cat") is None
    rgba = render_svg(svg, size=48)
    assert rgba.shape == (256, 256, 4)  # fitted onto the common canvas
    centre, corner = rgba[128, 128], rgba[5, 5]
    assert centre[3] == 255 and centre[:3].max() == 0  # currentColor drawn black
    assert corner[3] == 0
    rgb = flatten(rgba)
    assert rgb.shape == (256, 256, 3) and (rgb[5, 5] == 255).all()


def test_every_mapping_names_known_classes_and_no_reserved_package():
    from omnisep.data.corpus import CLASSES

    assert set(EMOJI_NAMES) <= set(CLASSES)
    assert all(set(table) <= set(CLASSES) for table in ICON_NAMES.values())
    assert all("openclipart" not in source.package for source in SOURCES)
    assert len({source.name for source in SOURCES}) == len(SOURCES) and all(source.licence for source in SOURCES)


def test_augmentation_is_seeded_and_varied():
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[64:192, 64:192] = (200, 30, 30, 255)
    first = [augment_picture(rgba, np.random.default_rng([1, k])) for k in range(6)]
    again = [augment_picture(rgba, np.random.default_rng([1, k])) for k in range(6)]
    assert all(a.shape == (224, 224, 3) and a.dtype == np.uint8 for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len({a.tobytes() for a in first}) == 6


def test_sketch_draws_edges_dark_on_white():
    rgb = flatten(np.pad(np.full((100, 100, 4), (0, 0, 255, 255), np.uint8), ((78, 78), (78, 78), (0, 0))))
    drawn = sketch(rgb)
    assert drawn[5, 5].min() > 200  # plain background stays white
    assert drawn[78:178, 76:80].min() < 100  # the square's border is a dark line
