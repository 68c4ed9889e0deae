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

from safetensors.torch import load_file, save_file

from omnisep import fileio
from omnisep.errors import OmniSepError
from omnisep.models import build, config_from_dict, config_to_dict
from omnisep.states import QueryBank

EXTRA_KEYS = (QueryBank.EMBEDDINGS_KEY,)


def ensemble_checkpoint(members: list[Path], weights: list[float] | None, inference_from: Path | None):
    """(tensors, config) of the ensemble; raises OmniSepError when the members cannot answer together."""
    configs = [json.loads((member / "config.json").read_text()) for member in members]
    encoders = [{k: v for k, v in config.get("encoder", {}).items() if k != "heads_version"} for config in configs]
    if any(encoder != encoders[0] for encoder in encoders[1:]):
        raise OmniSepError("the members were trained with different query encoders; their queries would not agree.")
    tensors = {}
    member_models = []
    for index, (member, config) in enumerate(zip(members, configs)):
        state = load_file(str(member / "model.safetensors"))
        if index == 0:
            tensors.update({name: state[name] for name in EXTRA_KEYS if name in state})
        model_config = config_from_dict(config["model"], strict=True)
        expected = set(build(model_config).state_dict())
        own = {name: value for name, value in state.items() if name in expected}
        if set(own) != expected:
            raise OmniSepError(f"{member} does not hold the weights its config describes.")
        member_models.append(config_to_dict(model_config))
        tensors.update({f"members.{index}.{name}": value for name, value in own.items()})
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
