"""Where models come from: bundled with the package, the local cache, or any checkpoint folder.

A model is a checkpoint directory (``config.json`` + ``model.safetensors``,
see :mod:`omnisep.states`). Bundled models ship inside the package under
``omnisep/pretrained/<name>/``; models a user installs live in
``$OMNISEP_CACHE/models/<name>/`` (default ``~/.cache/omnisep``). Nothing is
ever downloaded: a name that is not found is an error that says where we looked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omnisep.errors import OmniSepError, describe

# What `--model default` (and no --model) means. v1 and v2, the earlier defaults, stay loadable by name.
DEFAULT_MODEL = "v3"
DEFAULT_ALIAS = "default"
BUNDLED_DIR = Path(__file__).with_name("pretrained")


def cache_dir() -> Path:
    """The one folder omnisep writes to on its own (``$OMNISEP_CACHE``, default ``~/.cache/omnisep``)."""
    return Path(os.environ.get("OMNISEP_CACHE") or Path.home() / ".cache" / "omnisep").expanduser()


def local_models_dir() -> Path:
    return cache_dir() / "models"


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~"))


def _candidates(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint directory for a model name (bundled first, then local) or a path."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if _looks_like_path(text) or isinstance(name_or_path, Path):
        raise OmniSepError(f"model {describe(path)} does not exist.")
    bundled = _bundled_models()
    if BUNDLED_DIR / text in bundled:
        return BUNDLED_DIR / text
    if text == DEFAULT_ALIAS and BUNDLED_DIR / DEFAULT_MODEL in bundled:
        return BUNDLED_DIR / DEFAULT_MODEL
    if (local_models_dir() / text).is_dir():
        return local_models_dir() / text
    if text in (DEFAULT_ALIAS, DEFAULT_MODEL):
        raise OmniSepError(
            f"the bundled model {text!r} is missing from this installation ({describe(BUNDLED_DIR / DEFAULT_MODEL)} "
            "does not exist); pass a checkpoint folder with --model PATH (model=PATH) or train one with `omnisep train`."
        )
    known = [entry["name"] for entry in list_models()]
    hint = f"known models: {', '.join(known)}" if known else "no models are installed"
    raise OmniSepError(f"model {text!r} is neither a checkpoint folder nor an installed model name ({hint}).")


def describe_model(path: Path, name: str | None = None, source: str = "path") -> dict[str, Any]:
    """One registry row from a checkpoint's config.json (weights are not read)."""
    from omnisep.states import read_config

    row: dict[str, Any] = {"name": name or path.name, "source": source, "path": str(path)}
    try:
        config = read_config(path)
    except OmniSepError as error:
        return {**row, "encoder": None, "labels": None, "ngf": None, "error": str(error)}
    bank = config.get("query_bank") or {}
    training = config.get("training") or {}
    from omnisep.states import contrast_strength, negative_defaults, second_look_gate

    try:
        negative = negative_defaults(config, path)
        contrast = contrast_strength(config, path)
        second_look = second_look_gate(config, path)
    except OmniSepError as error:
        return {**row, "encoder": None, "labels": None, "ngf": None, "error": str(error)}
    return {
        **row,
        "encoder": config["encoder"].get("name"),
        "encoder_version": config["encoder"].get("version"),
        "labels": len(bank.get("labels") or []),
        # an ensemble's width is its members' ("16+16"), its kind names theirs
        "ngf": _member_field(config["model"], "ngf"),
        "depth": _member_field(config["model"], "depth"),
        "emb_dim": config["model"].get("emb_dim"),
        "kind": _kind_name(config["model"]),
        "trained_steps": training.get("step"),
        "negative": negative,
        "contrast": contrast,
        "second_look": second_look,
        "error": None,
    }


def _member_field(model: dict[str, Any], field: str):
    members = model.get("members")
    if isinstance(members, list) and members:
        return "+".join(str(member.get(field)) for member in members if isinstance(member, dict))
    return model.get(field)


def _kind_name(model: dict[str, Any]) -> str:
    kind = model.get("kind", "paper")
    members = model.get("members")
    if kind == "ensemble" and isinstance(members, list):
        return f"ensemble of {' + '.join(str(m.get('kind', 'paper')) for m in members if isinstance(m, dict))}"
    return kind


def _bundled_models() -> list[Path]:
    """The bundled checkpoints; the folder also holds assets that are not models (the encoder heads)."""
    return [path for path in _candidates(BUNDLED_DIR) if (path / "config.json").is_file()]


def list_models() -> list[dict[str, Any]]:
    """Bundled, then local models: name, source, path, encoder, labels (count), ngf, whether it is the default;
    broken ones with an error."""
    rows = [describe_model(path, source="bundled") for path in _bundled_models()]
    rows += [describe_model(path, source="local") for path in _candidates(local_models_dir())]
    for row in rows:
        row["default"] = row["source"] == "bundled" and row["name"] in (DEFAULT_MODEL, DEFAULT_ALIAS)
    return rows
