"""The demo's live tab in a real browser: how long from microphone to loudspeaker, at each latency setting.

Starts `omnisep demo` (the bundled model unless --model), opens it in headless
Debian chromium whose microphone is the fake capture device playing a wav
(a gated 440 Hz tone, looped), records for --seconds at each latency and
prints what the page shows: the stream's own latency, the browser's chunk
length, compute per second of audio, late blocks (compute longer than the
chunk), and the player's numbers: underruns, dropped blocks and the
microphone-to-loudspeaker delay of the played blocks (median of the last 20),
as a lower bound (short of the truth by the fastest chunk round trip) and an
upper bound (counted from the Record click, so the microphone's start-up
counts too). See omnisep.demo.live for how the bounds are made.

    nice -n 10 python benchmarks/live_page.py --seconds 20
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 48000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--seconds", type=float, default=20.0, help="recording length per latency")
    parser.add_argument("--latencies", default="100 ms,250 ms,500 ms,1 s")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="omnisep-live-page-"))
    t = np.arange(4 * RATE) / RATE
    sf.write(folder / "microphone.wav", 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 0.5 < 0.3), RATE, subtype="PCM_16")
    port = free_port()
    command = [sys.executable, "-m", "omnisep", "demo", "--port", str(port)] + (["--model", args.model] if args.model else [])
    env = {**os.environ, "OMNISEP_CACHE": os.environ.get("OMNISEP_CACHE", str(folder / "cache"))}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={folder / 'microphone.wav'}",
                "--autoplay-policy=no-user-gesture-required",
            ])
            print("| setting | stream latency | chunk | compute / s of audio | late blocks | underruns | dropped "
                  "| delay, lower bound | delay, upper bound |")
            print("|---|---|---|---|---|---|---|---|---|")
            for latency in args.latencies.split(","):
                page = browser.new_page()
                page.goto(url, wait_until="load")
                page.get_by_role("tab", name="Live").first.click()
                page.fill("#live-text textarea", "speech")
                page.get_by_label(latency, exact=True).check()
                page.locator("#live-mic button", has_text="Record").click()
                page.wait_for_timeout(args.seconds * 1000)
                status = page.inner_text("#live-status")
                live = page.evaluate("({...window.omnisepLive, ctx: undefined, plays: undefined})")
                page.locator("#live-mic button", has_text="Stop").click()
                page.wait_for_timeout(1000)
                page.close()
                stream_latency = re.search(r"latency (\d+ ms)", status).group(1)
                chunk = re.search(r"browser's (\d+ ms) chunks", status).group(1)
                compute = re.search(r"compute ([\d.]+) s", status).group(1)
                late = re.search(r"late blocks: (\d+)", status).group(1)
                print(f"| {latency} | {stream_latency} | {chunk} | {compute} s | {late} | {live['underruns']} | "
                      f"{live['dropped']} | {live['delay'] * 1000:.0f} ms | {live['delayFromClick'] * 1000:.0f} ms |")
            browser.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
