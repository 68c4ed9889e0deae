from PIL import Image

from omnisep.plotting.live import live_figure, plot_live


def test_sdri_against_latency_plot(tmp_path):
    points = [(96.0, 3.2, ""), (240.0, 3.5, ""), (240.0, 3.4, "hop 128 ms"), (992.0, 3.6, "")]
    figure = live_figure(points, offline=4.1)
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    assert len(axis.get_legend().get_texts()) == 3  # the line, the variant, offline
    path = plot_live(points, 4.1, tmp_path / "live.png")
    assert Image.open(path).size[0] > 300
