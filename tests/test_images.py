from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from omnisep.errors import OmniSepError
from omnisep.images import centre_frames, load_image, video_frames


def test_png_alpha_is_flattened_on_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200  # red channel
    rgba[:, :3, 3] = 255  # left half opaque, right half fully transparent
    rgba[0, 0, 3] = 128  # one half-transparent pixel
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = load_image(path)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert image[1, 1].tolist() == [200, 0, 0]
    assert image[1, 4].tolist() == [255, 255, 255]
    # 50 % (128/255) of (200, 0, 0) over white: 200*a + 255*(1-a)
    alpha = 128 / 255
    expected = [round(200 * alpha + 255 * (1 - alpha)), round(255 * (1 - alpha)), round(255 * (1 - alpha))]
    assert np.abs(image[0, 0].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".png"])
def test_common_formats_decode_to_rgb(tmp_path, suffix):
    array = np.zeros((16, 10, 3), np.uint8)
    array[:, :, 2] = 180
    path = tmp_path / f"blue{suffix}"
    Image.fromarray(array).save(path, quality=95)
    image = load_image(path)
    assert image.shape == (16, 10, 3)
    assert abs(int(image[8, 5, 2]) - 180) <= 3 and image[8, 5, 0] <= 3


def test_grey_and_float_arrays_are_accepted():
    grey = load_image(np.full((3, 3), 7, np.uint8))
    assert grey.shape == (3, 3, 3) and (grey == 7).all()
    floats = load_image(np.full((2, 2, 3), 0.5, np.float32))
    assert (floats == 128).all()


def test_unreadable_missing_and_bad_arrays_raise_one_sentence(tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text, not a png")
    with pytest.raises(OmniSepError, match="not-an-image.png.*cannot be read"):
        load_image(bad)
    with pytest.raises(OmniSepError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(OmniSepError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(OmniSepError, match="shape"):
        load_image(np.zeros((5, 5, 2), np.uint8))


def write_counting_video(path, seconds=3, fps=10, size=32):
    """Frame k is a flat grey of value 5 * k, so a frame's index can be read back from its pixels."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}  # lossless, so the grey levels survive
        for k in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 5 * k, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_index(frame):
    return round(float(frame.mean()) / 5)


def test_video_frames_at_one_fps(tmp_path):
    path = tmp_path / "count.mp4"
    write_counting_video(path)
    frames = video_frames(path, fps=1)
    # instants 0, 1, 2 s show frames 0, 10, 20
    assert [frame_index(f) for f in frames] == [0, 10, 20]
    assert frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
    assert [frame_index(f) for f in video_frames(path, fps=2, start=1.0, end=2.0)] == [10, 15]
    assert [frame_index(f) for f in video_frames(path, fps=4, start=2.5)] == [25, 27]  # 2.5 s, 2.75 s (frame 27.5 -> 27)


def test_video_errors(tmp_path):
    with pytest.raises(OmniSepError, match="does not exist"):
        video_frames(tmp_path / "none.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(OmniSepError, match="broken.mp4"):
        video_frames(broken)
    path = tmp_path / "count.mp4"
    write_counting_video(path, seconds=1)
    with pytest.raises(OmniSepError, match="no frame"):
        video_frames(path, start=5.0)


def test_centre_frames_picks_centre_and_neighbours():
    frames = [np.full((1, 1, 3), k, np.uint8) for k in range(10)]
    assert [int(f[0, 0, 0]) for f in centre_frames(frames)] == [4, 5, 6]
    assert [int(f[0, 0, 0]) for f in centre_frames(frames[:1])] == [0]
    assert [int(f[0, 0, 0]) for f in centre_frames(frames[:2])] == [0, 1]


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((2, 4, 3), np.uint8)  # stored 4 wide, 2 high
    stored[:, :2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    assert load_image(tmp_path / "phone.jpg").shape == (4, 2, 3)
