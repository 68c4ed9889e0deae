from PIL import Image

from omnisep.plotting.presence import plot_presence_curves, presence_figure


def _row(threshold):
    level = {"precision": 0.5 + threshold / 2, "recall": 1.0 - threshold, "f1": 0.6}
    return {"threshold": threshold, "clip": level, "frame": level}


def test_precision_recall_panels_per_level(tmp_path):
    curves = {"validation": [_row(t) for t in (0.1, 0.5, 0.9)], "test": [_row(t) for t in (0.1, 0.5, 0.9)]}
    figure = presence_figure(curves, chosen=0.5)
    clip, frame = figure.axes
    assert (clip.get_title(), frame.get_title()) == ("clip level", "frame level")
    assert len(clip.get_lines()) == 7  # 3 measures x 2 sets + the chosen threshold
    assert [t.get_text() for t in clip.get_legend().get_texts()][:3] == ["precision (validation)", "recall (validation)",
                                                                         "F1 (validation)"]
    path = plot_presence_curves(curves, 0.5, tmp_path / "curves.png")
    assert Image.open(path).size == (1000, 360)
