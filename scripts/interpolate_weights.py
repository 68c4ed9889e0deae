"""Blend a fine-tune back towards the model it started from (weight-space interpolation, "WiSE-FT").

A fine-tune that learns one thing (pictures by other artists) can lose a little of another (text);
the straight line between the two weight sets often keeps most of both, at no training cost.

    python scripts/interpolate_weights.py src/omnisep/pretrained/v2 runs/v2-pictures/best \
        runs/v2-pictures-blend50 --weight 0.5

weight 0 gives the base, 1 the fine-tune. The two must share one architecture (same tensor names and
shapes); the result is float32 with the fine-tune's config.json, ready for scripts/export_half.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from omnisep import fileio
from omnisep.errors import OmniSepError
from omnisep.states import blend_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="checkpoint folder the fine-tune started from")
    parser.add_argument("tuned", type=Path, help="checkpoint folder of the fine-tune")
    parser.add_argument("target", type=Path)
    parser.add_argument("--weight", type=float, default=0.5, help="share of the fine-tune, 0..1 (default 0.5)")
    args = parser.parse_args()
    try:
        blended = blend_weights(load_file(str(args.base / "model.safetensors")),
                                load_file(str(args.tuned / "model.safetensors")), args.weight)
    except (OSError, OmniSepError) as error:
        sys.exit(f"cannot blend {args.base} and {args.tuned}: {error}")
    config = json.loads((args.tuned / "config.json").read_text())
    config["blended"] = {"base": str(args.base), "tuned": str(args.tuned), "weight": args.weight}
    args.target.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_dir(args.target) as staging:  # a killed run leaves no half-written checkpoint
        save_file(blended, str(staging / "model.safetensors"), metadata={"format": "omnisep-checkpoint"})
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"{args.base} x{1 - args.weight:.2f} + {args.tuned} x{args.weight:.2f} -> {args.target}")


if __name__ == "__main__":
    main()
