"""The web demo in a real browser: headless Debian chromium driven by Playwright.

The server is the real `omnisep demo` command on a free localhost port with
the tiny checkpoint. The page must never reach beyond localhost, must show
one-sentence messages for bad input, and must return the same target the
Python API computes. The live tab gets a synthetic microphone: chromium's
fake capture device playing a wav made here. With OMNISEP_SCREENSHOTS=1 it
also refreshes docs/images/demo.png (and demo-live.png).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
RATE = 22050
STARTUP_LIMIT_SECONDS = 90  # generous: CI shares two cores; the measured start is printed
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "demo.png"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-inputs")
    rng = np.random.default_rng(11)
    t = np.arange(int(2.0 * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 523.25 * t) * (t % 0.5 < 0.3)
    mixture = np.stack([tone + 0.1 * rng.standard_normal(t.size), tone + 0.1 * rng.standard_normal(t.size)], axis=1)
    sf.write(folder / "street.wav", mixture, RATE, subtype="FLOAT")
    (folder / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    sf.write(folder / "huge.wav", 0.1 * rng.standard_normal(16000 * 40), 16000)  # 1.3 MB, over the 1 MB limit
    return folder


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    port = free_port()
    cache = tmp_path_factory.mktemp("omnisep-cache")
    env = {**os.environ, "OMNISEP_CACHE": str(cache)}
    env.pop("GRADIO_TEMP_DIR", None)
    log_path = cache / "demo.log"
    command = [sys.executable, "-m", "omnisep", "demo", "--model", str(tiny_checkpoint), "--port", str(port), "--max-upload-mb", "1"]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"`omnisep demo` exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - started > STARTUP_LIMIT_SECONDS:
                pytest.fail(f"`omnisep demo` did not answer within {STARTUP_LIMIT_SECONDS} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        print(f"omnisep demo answered after {time.perf_counter() - started:.1f} s")
        yield url, cache, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright):
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def open_page(page, url: str) -> None:
    """Load the page until its controls are there (never "network idle": the live tab's per-session state keeps
    Gradio's heartbeat connection open)."""
    page.goto(url, wait_until="load")
    page.wait_for_selector("#separate-button", timeout=30_000)
    page.wait_for_load_state("load")


def toasts(page) -> str:
    return "\n".join(page.locator(".toast-body").all_inner_texts())


def wait_for_toast(page, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = toasts(page)
        if text in shown:
            return shown
        page.wait_for_timeout(200)
    pytest.fail(f"no message containing {text!r} appeared; shown: {toasts(page)!r}")


def fetch_wav(url: str, folder: Path, name: str):
    path = folder / name
    with urllib.request.urlopen(url, timeout=10) as response:
        path.write_bytes(response.read())
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.T, rate


def test_separation_in_the_browser(server, browser, inputs, tiny_checkpoint, tmp_path):
    from omnisep.api import Separator

    url, cache, log_path = server
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_page(page, url)
    assert page.title() == "omnisep demo"

    # Bad input first: each one is a visible sentence, never a traceback.
    page.click("#separate-button")
    wait_for_toast(page, "Upload or record a mixture first.")
    page.set_input_files("#mixture input[type=file]", str(inputs / "huge.wav"))
    wait_for_toast(page, "huge.wav")
    assert page.locator("#mixture audio").count() == 0  # the upload was refused
    page.set_input_files("#mixture input[type=file]", str(inputs / "broken.wav"))
    page.wait_for_selector("#mixture audio", state="attached")
    page.fill("#text-query textarea", "dog barking")
    page.click("#separate-button")
    wait_for_toast(page, "Mixture: 'broken.wav'")

    page.click("#mixture button[aria-label='Clear']")
    page.set_input_files("#mixture input[type=file]", str(inputs / "street.wav"))
    page.wait_for_selector("#mixture audio", state="attached")
    page.fill("#text-query textarea", "")
    page.click("#separate-button")
    wait_for_toast(page, "Give at least one query")

    page.fill("#text-query textarea", "dog barking")
    page.click("#separate-button")
    target_link = page.locator("#target-audio a[download]")
    target_link.wait_for(state="attached", timeout=60_000)
    page.locator("#spectrograms img").wait_for(state="visible", timeout=30_000)
    status = page.inner_text("#status")
    assert "Separated dog barking from 'street.wav' (2.0 s)" in status

    target, rate = fetch_wav(target_link.get_attribute("href"), tmp_path, "target.wav")
    residual, _ = fetch_wav(page.locator("#residual-audio a[download]").get_attribute("href"), tmp_path, "residual.wav")
    assert target_link.get_attribute("download") == "street_target.wav"
    mixture, _ = sf.read(inputs / "street.wav", dtype="float32", always_2d=True)
    expected = Separator(tiny_checkpoint).separate(mixture.T, RATE, text="dog barking", weights=[1.0])
    assert rate == RATE and target.shape == mixture.T.shape
    np.testing.assert_allclose(target, expected.target, atol=1e-6)
    np.testing.assert_allclose(target + residual, mixture.T, atol=1e-6)
    assert np.abs(target - mixture.T).max() > 0.01

    if os.environ.get("OMNISEP_SCREENSHOTS") == "1":
        for toast_close in page.locator(".toast-body button").all():
            toast_close.click()
        page.locator(".toast-body").first.wait_for(state="detached")
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    outside = [u for u in requested if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS]
    assert requested and not outside, f"the page reached beyond localhost: {outside}"
    # Uploads and results stay in the cache folder the server was given.
    assert any((cache / "demo" / "uploads").rglob("street.wav"))
    assert any((cache / "demo" / "results").rglob("street_target.wav"))
    assert "Traceback" not in log_path.read_text()
    page.close()


def test_examples_scan_and_automatic_negative_in_the_browser(server, browser, tiny_checkpoint, tmp_path):
    """One click fills a bundled example; the mixture's scan timeline appears; the automatic
    negative query separates what the Python API separates and says which label it removed."""
    from omnisep.api import Separator
    from omnisep.audio import load_audio
    from omnisep.demo.app import EXAMPLES_DIR

    url, cache, log_path = server
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_page(page, url)
    rows = page.locator("#examples tbody tr")
    rows.nth(5).wait_for(state="attached", timeout=30_000)
    assert rows.count() == 6
    rows.first.click()
    page.wait_for_selector("#mixture audio", state="attached", timeout=30_000)
    page.wait_for_function("document.querySelector('#text-query textarea').value === 'dog barking'", timeout=30_000)
    assert page.is_checked("#auto-negative input")

    page.locator("#scan-timeline img").wait_for(state="visible", timeout=60_000)
    assert page.inner_text("#scan-status").startswith("Scan: ")

    page.click("#separate-button")
    target_link = page.locator("#target-audio a[download]")
    target_link.wait_for(state="attached", timeout=60_000)
    page.wait_for_function("document.querySelector('#status').innerText.includes('automatic negative')", timeout=30_000)
    status = page.inner_text("#status")

    audio, rate = load_audio(EXAMPLES_DIR / "dog_and_violin.wav")
    expected = Separator(tiny_checkpoint).separate(audio, rate, text="dog barking", weights=[1.0], negative="auto")
    removed = expected.negatives[0].label
    assert f"Separated dog barking - {removed} (auto) from 'dog_and_violin.wav'" in status
    assert f"removed '{removed}'" in status
    target, target_rate = fetch_wav(target_link.get_attribute("href"), tmp_path, "target.wav")
    assert target_rate == rate
    np.testing.assert_allclose(target, expected.target, atol=1e-6)
    if os.environ.get("OMNISEP_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOT.with_name("demo-query-tools.png")), full_page=True)

    outside = [u for u in requested if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS]
    assert requested and not outside, f"the page reached beyond localhost: {outside}"
    assert "Traceback" not in log_path.read_text()
    page.close()


LIVE_RATE = 48000  # what browsers record at


def test_live_tab_with_a_synthetic_microphone(server, playwright, tiny_checkpoint, tmp_path):
    """Chromium's fake capture device plays a wav as the microphone: blocks are separated while it runs, the
    page plays them back, a query change shows up mid-stream, and stopping offers the whole recording."""
    url, cache, log_path = server
    t = np.arange(4 * LIVE_RATE) / LIVE_RATE  # chromium loops the file
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 0.5 < 0.3)
    sf.write(tmp_path / "microphone.wav", tone, LIVE_RATE, subtype="PCM_16")
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream",  # allow the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tmp_path / 'microphone.wav'}",
        "--autoplay-policy=no-user-gesture-required",
    ])
    try:
        page = chromium.new_page(viewport={"width": 1280, "height": 1100})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        open_page(page, url)
        page.get_by_role("tab", name="Live").first.click()
        page.fill("#live-text textarea", "dog barking")
        def status() -> str:
            return page.inner_text("#live-status")

        def blocks() -> int:
            found = re.search(r"(\d+) blocks, ", status())
            return int(found.group(1)) if found else 0

        # On a loaded machine the first click can come before the recorder is ready, or the fake
        # microphone can start without delivering audio: re-arm (Stop, then Record) until the
        # first separated block arrives, at most five times.
        for _ in range(5):
            page.locator("#live-mic button", has_text="Record").click()
            try:
                page.locator("#live-mic button", has_text="Stop").first.wait_for(state="visible", timeout=15_000)
            except Exception:  # playwright's TimeoutError
                continue
            deadline = time.monotonic() + 20
            while blocks() == 0 and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            if blocks() > 0:
                break
            page.locator("#live-mic button", has_text="Stop").click()
            page.locator("#live-mic button", has_text="Record").first.wait_for(state="visible", timeout=15_000)

        def wait_until(condition, what: str, timeout: float = 60.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    pytest.fail(f"{what} did not happen within {timeout:g} s; status: {status()!r}")
                page.wait_for_timeout(200)

        wait_until(lambda: blocks() >= 15, "15 separated blocks")
        assert "keeping dog barking" in status() and "latency" in status()
        played = page.evaluate("window.omnisepLive.samples")
        assert played > 0  # the page received separated audio ...
        assert page.evaluate("window.omnisepLive.sum2") > 0  # ... that is not silence
        before = blocks()
        page.fill("#live-text textarea", "violin")  # while it runs
        wait_until(lambda: "keeping violin" in status() and "query changed to violin" in status(), "the query change")
        assert blocks() > before  # the same stream went on
        wait_until(lambda: blocks() >= before + 10, "10 more blocks")
        live = page.evaluate("({...window.omnisepLive, ctx: window.omnisepLive.ctx.state, plays: undefined})")
        player = page.inner_text("#live-player")
        print(f"live page: {status()}\n{player}\nplayer state: {live}")
        assert live["samples"] > played and "Playback: " in player
        if os.environ.get("OMNISEP_SCREENSHOTS") == "1":
            page.screenshot(path=str(SCREENSHOT.with_name("demo-live.png")), full_page=True)

        page.locator("#live-mic button", has_text="Stop").click()
        wait_until(lambda: status().startswith("Stopped."), "the stop")
        heard = float(re.search(r"([\d.]+) s in", status()).group(1))
        assert f"{heard:.1f} s out" in status()  # the tail came with the stop: as much out as in
        target_link = page.locator("#live-target a[download]")
        target_link.wait_for(state="attached", timeout=20_000)
        target, rate = fetch_wav(target_link.get_attribute("href"), tmp_path, "live_target.wav")
        residual, _ = fetch_wav(page.locator("#live-residual a[download]").get_attribute("href"), tmp_path, "live_residual.wav")
        assert rate == LIVE_RATE and target.shape == residual.shape and abs(target.shape[1] / rate - heard) < 0.06
        # target + residual is the microphone signal: the 440 Hz tone (at the level chromium's automatic gain set)
        mixture = (target + residual)[0]
        spectrum = np.abs(np.fft.rfft(mixture))
        assert abs(np.fft.rfftfreq(mixture.size, 1 / rate)[spectrum.argmax()] - 440) < 5
        assert np.abs(target).max() > 0.01
        outside = [u for u in requested if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS]
        assert requested and not outside, f"the page reached beyond localhost: {outside}"
        assert "Traceback" not in log_path.read_text()
    finally:
        chromium.close()
