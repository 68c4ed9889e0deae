"""`omnisep train CONFIG`: train, or continue an interrupted run of the same config."""

from __future__ import annotations

import click


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from OUT_DIR/resume when it exists; --no-resume starts again from step 0.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set optim.lr=3e-4 --set data.num_workers=0 (repeatable).",
)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the config's, usually auto).")
def train(config_path, resume, overrides, device):
    """Train a Separate-Net from a TOML or JSON CONFIG.

    \b
    Examples:
      omnisep train configs/tiny.toml
      omnisep train configs/tiny.toml --set steps=500 --set out_dir=runs/tiny2
      torchrun --nproc_per_node 8 -m omnisep train configs/paper.toml
    """
    from omnisep.training.config import load_config
    from omnisep.training.loop import train as run_training

    if device is not None:
        overrides = (*overrides, f'device="{device}"')
    config = load_config(config_path, overrides)
    result = run_training(config, resume=resume, log=lambda message: click.echo(message, err=True))
    if result.is_main:
        click.echo(f"done: step {result.step}; checkpoints in {result.out_dir}")
