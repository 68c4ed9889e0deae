"""Copy a checkpoint with its floating-point weights stored as float16 (half the size; loading casts them back).

    python scripts/export_half.py runs/v2-film/best src/omnisep/pretrained/v2
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    tensors = load_file(str(args.source / "model.safetensors"))
    half = {name: value.half() if value.is_floating_point() else value for name, value in tensors.items()}
    args.target.mkdir(parents=True, exist_ok=True)
    save_file(half, str(args.target / "model.safetensors"), metadata={"format": "omnisep-checkpoint"})
    shutil.copyfile(args.source / "config.json", args.target / "config.json")
    print(f"{args.source} -> {args.target} ({sum(v.numel() for v in half.values()) / 1e6:.2f} M values)")


if __name__ == "__main__":
    main()
