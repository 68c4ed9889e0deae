"""Write one checkpoint that runs several trained Separate-Nets together (kind ``ensemble``).

    python scripts/make_ensemble.py runs/v3-ensemble src/omnisep/pretrained/v2 runs/v3-long-pictures/best \
        --inference-from src/omnisep/pretrained/v2

The members must share the query encoder (same embeddings) and frame layout. Their mask logits are
averaged (``--weights`` for unequal shares); the query bank comes from the first member, the inference
settings (negative queries, contrast, scan) from ``--inference-from`` or the first member. Weights are
stored as float16, as the bundled models are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from omnisep import fileio
from omnisep.encoders.base import identities_compatible
from omnisep.errors import OmniSepError
from omnisep.models import config_from_dict, config_to_dict
from omnisep.states import QueryBank, load_checkpoint


def ensemble_checkpoint(members: list[Path], weights: list[float] | None, inference_from: Path | None):
    """(tensors, config) of the ensemble; raises OmniSepError when the members cannot answer together."""
    # load_checkpoint checks each member's weights against its config (names, shapes, finite values)
    loaded = [load_checkpoint(member) for member in members]
    configs = [checkpoint.config for checkpoint in loaded]
    first = configs[0]["encoder"]
    if any(not identities_compatible(first, config["encoder"])
           or first.get("heads_version") != config["encoder"].get("heads_version") for config in configs[1:]):
        raise OmniSepError("the members were trained with different query encoders; their queries would not agree.")
    tensors = {}
    if loaded[0].bank is not None:  # the first member's bank as stored (QueryBank would re-normalise it)
        with safe_open(str(members[0] / "model.safetensors"), framework="pt") as handle:
            tensors[QueryBank.EMBEDDINGS_KEY] = handle.get_tensor(QueryBank.EMBEDDINGS_KEY)
    member_models = []
    for index, checkpoint in enumerate(loaded):
        member_models.append(config_to_dict(checkpoint.model.config))
        tensors.update({f"members.{index}.{name}": value for name, value in checkpoint.model.state_dict().items()})
    emb_dims = {model["emb_dim"] for model in member_models}
    if len(emb_dims) != 1:
        raise OmniSepError(f"the members take queries of different widths {sorted(emb_dims)}.")
    model = {"kind": "ensemble", "members": member_models, "weights": weights or [],
             "emb_dim": emb_dims.pop(), "binary_mask": False}
    config = dict(configs[0])
    config["model"] = config_to_dict(config_from_dict(model, strict=True))  # normalised and checked
    source = configs[0] if inference_from is None else json.loads((inference_from / "config.json").read_text())
    if source.get("inference"):
        config["inference"] = source["inference"]
    # each member's own training record (config, step, validation) stays with the ensemble
    config["ensemble"] = {"members": [{"path": str(member), "training": member_config.get("training")}
                                      for member, member_config in zip(members, configs)]}
    for key in ("blended", "training"):
        config.pop(key, None)
    half = {name: value.half() if value.is_floating_point() else value for name, value in tensors.items()}
    return half, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path)
    parser.add_argument("members", type=Path, nargs="+", help="checkpoint folders (two or more)")
    parser.add_argument("--weights", type=lambda text: [float(w) for w in text.split(",")],
                        help="comma-separated shares summing to 1 (default: equal)")
    parser.add_argument("--inference-from", type=Path, metavar="CHECKPOINT")
    args = parser.parse_args()
    try:
        tensors, config = ensemble_checkpoint(args.members, args.weights, args.inference_from)
    except (OSError, KeyError, OmniSepError) as error:
        sys.exit(f"cannot make an ensemble of {', '.join(map(str, args.members))}: {error}")
    args.target.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_dir(args.target) as staging:
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "omnisep-checkpoint"})
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"{' + '.join(map(str, args.members))} -> {args.target}")


if __name__ == "__main__":
    main()
