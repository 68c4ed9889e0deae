"""Copy a checkpoint with its floating-point weights stored as float16 (half the size; loading casts them back).

    python scripts/export_half.py runs/v2-film/best src/omnisep/pretrained/v2 \
        --negative-mode logit --alpha 2 --contrast 0.5

The negative-query options record the model's measured defaults (chosen on
validation mixtures) in its config.json, where omnisep.api.negative_defaults
reads them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--negative-mode", choices=["proportional", "naive", "logit"])
    parser.add_argument("--alpha", type=float, help="default strength of a negative query")
    parser.add_argument("--auto-alpha", type=float, help="default strength of the automatic negative query")
    parser.add_argument("--auto-count", type=int, help="default number of labels the automatic negative subtracts")
    parser.add_argument("--scan-threshold", type=float, help="presence threshold of `omnisep scan` chosen on validation")
    parser.add_argument("--contrast", type=float, help="query-contrast strength for queries without a negative; 0: none")
    parser.add_argument("--inference-from", type=Path, metavar="CHECKPOINT",
                        help="start from this checkpoint's inference settings (scan threshold and verification, "
                             "negative defaults, contrast); the options above then override them")
    args = parser.parse_args()
    tensors = load_file(str(args.source / "model.safetensors"))
    half = {name: value.half() if value.is_floating_point() else value for name, value in tensors.items()}
    args.target.mkdir(parents=True, exist_ok=True)
    save_file(half, str(args.target / "model.safetensors"), metadata={"format": "omnisep-checkpoint"})
    config = json.loads((args.source / "config.json").read_text())
    if args.inference_from is not None:
        inherited = json.loads((args.inference_from / "config.json").read_text()).get("inference")
        if inherited:
            config["inference"] = inherited
    negative = {key: value for key, value in
                (("mode", args.negative_mode), ("alpha", args.alpha), ("auto_alpha", args.auto_alpha),
                 ("auto_count", args.auto_count)) if value is not None}
    if negative:
        config.setdefault("inference", {}).setdefault("negative", {}).update(negative)
    if args.contrast == 0:
        config.get("inference", {}).pop("contrast", None)
    elif args.contrast is not None:
        config.setdefault("inference", {})["contrast"] = {"alpha": args.contrast}
    if args.scan_threshold is not None:
        config.setdefault("inference", {}).setdefault("scan", {})["threshold"] = args.scan_threshold
    (args.target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"{args.source} -> {args.target} ({sum(v.numel() for v in half.values()) / 1e6:.2f} M values)")


if __name__ == "__main__":
    main()
