"""`omnisep models`: the bundled models and those installed in the local cache."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(as_json):
    """List bundled and local models with their query encoder and vocabulary size.

    The default (no --model, or --model default) is marked; the first bundled
    model stays available as v1.

    Local models are checkpoint folders under $OMNISEP_CACHE/models/ (default
    ~/.cache/omnisep/models/); any checkpoint folder also works directly with
    `omnisep separate --model PATH`.

    \b
    Examples:
      omnisep models
      omnisep models --json
    """
    from omnisep.pretrained import BUNDLED_DIR, list_models, local_models_dir

    rows = list_models()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"No models found in {BUNDLED_DIR} or {local_models_dir()}.")
        return
    table = Table()
    for column, justify in [("name", "left"), ("source", "left"), ("encoder", "left"), ("labels", "right"),
                            ("ngf", "right"), ("path", "left")]:
        table.add_column(column, justify=justify)
    for row in rows:
        if row["error"]:
            table.add_row(row["name"], row["source"], "[red]unreadable[/]", "", "", row["path"])
            continue
        name = f"{row['name']} (default)" if row["default"] and row["name"] != "default" else row["name"]
        table.add_row(name, row["source"], row["encoder"], str(row["labels"]), str(row["ngf"]), row["path"])
    console.print(table)
    for row in rows:
        if not row["error"]:
            negative = row["negative"]
            kind = f"an {row['kind']} networks" if row["kind"].startswith("ensemble") else f"a '{row['kind']}' network"
            console.print(f"{row['name']}: {kind}; negative queries: {negative['mode']} mode, "
                          f"alpha {negative['alpha']:g} (automatic: {negative['auto_count']} label(s) from the {negative['auto_source']}, "
                          f"alpha {negative['auto_alpha']:g}); query contrast "
                          f"{row['contrast']:g}; second look {_second_look(row['second_look'])}", highlight=False)
    for row in rows:
        if row["error"]:
            console.print(f"[red]{row['name']}[/]: {row['error']}", markup=True, highlight=False)


def _second_look(gate: float | None) -> str:
    return "none" if gate is None else f"for outputs under {gate:g} dB of the input"
