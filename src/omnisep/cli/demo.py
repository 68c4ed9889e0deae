"""`omnisep demo`: serve the local web demo."""

from __future__ import annotations

import importlib.util
import ipaddress
import time
from pathlib import Path

import click

from omnisep.errors import OmniSepError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("demo")
@click.option("--model", default="default", show_default=True, help="Bundled model name or checkpoint folder.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; localhost keeps it private.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--max-upload-mb", default=50, show_default=True, type=click.IntRange(1), help="Largest file a user may upload.")
@click.option("--max-minutes", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Longest mixture the page accepts.")
def demo(model, host, port, max_upload_mb, max_minutes):
    """Start the local web demo (offline: no analytics, no share link, no web fonts).

    \b
    Example:
      omnisep demo --port 7860      then open http://127.0.0.1:7860
    """
    started = time.perf_counter()
    if importlib.util.find_spec("gradio") is None:
        raise OmniSepError("the demo needs Gradio, which is not installed; run: pip install 'omnisep[demo]'")
    from omnisep.api import Separator
    from omnisep.demo.app import check_port, launch

    check_port(host, port)  # before the model loads, so a busy port fails at once
    if not _is_loopback(host):
        click.echo(f"omnisep: warning: listening on {host}, so other machines can reach the demo.", err=True)
    separator = Separator(model=model)
    app = launch(separator, host=host, port=port, max_upload_mb=max_upload_mb, max_seconds=max_minutes * 60,
                 model_name=Path(model).name)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"omnisep demo: ready in {time.perf_counter() - started:.1f} s at http://{shown}:{port} "
               "(Ctrl-C stops it)", err=True)
    try:
        app.block_thread()
    finally:
        app.close()
