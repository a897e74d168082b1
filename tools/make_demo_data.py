"""Write the synthetic demo dataset (cars and sign boards): ``python tools/make_demo_data.py [--out DIR]``.

Keeps an existing dataset made with the same parameters (``<out>/demo_params.json``) unless ``--force``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskseg_d2.demo import GENERATOR_VERSION, make_demo_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="datasets/demo", help="output folder (default: datasets/demo)")
    for flag, default in (("--num-images", 80), ("--width", 256), ("--height", 192), ("--seed", 0)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--force", action="store_true", help="regenerate even if the dataset exists")
    args = parser.parse_args(argv)
    out = Path(args.out)
    params = {"version": GENERATOR_VERSION, "num_images": args.num_images, "width": args.width,
              "height": args.height, "seed": args.seed}
    if not args.force and (out / "labelstudio.json").exists() and (out / "demo_params.json").exists():
        old = json.loads((out / "demo_params.json").read_text(encoding="utf-8"))
        if all(old.get(k) == v for k, v in params.items()):
            instances = old.get("summary", {}).get("instances")
            print(f"kept existing demo dataset in {out} (instances {instances}); --force regenerates")
            return 0
    s = make_demo_dataset(out, args.num_images, args.width, args.height, args.seed)
    print(f"wrote {s['num_images']} images ({s['num_negative']} negative), instances {s['instances']}, "
          f"Label Studio {s['labelstudio_types']}, LabelMe {s['labelme_types']} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
