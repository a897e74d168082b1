"""Convert annotations to one COCO instances JSON, optionally with a validation report.

    python tools/convert.py INPUT... --image-root DIR -o OUT.json [--format auto|labelstudio|labelme|coco]
    python tools/convert.py datasets/cars_signs/labelstudio.json --image-root datasets/cars_signs/images --report

INPUT: Label Studio exports (JSON, JSON_MIN, COCO), COCO files, LabelMe files/folders; or a live project's URL.
Bad input: exit code 2, one line naming the file and item (--on-error skip: left out and counted).
"""

import argparse
import logging
from pathlib import Path

from maskseg_d2.data.convert import convert
from maskseg_d2.data.formats import FORMATS
from maskseg_d2.data.labelstudio_api import project_url
from maskseg_d2.errors import UserError
from maskseg_d2.utils.cli import exit_on_user_error


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="export file(s), LabelMe folder(s), a project URL")
    p.add_argument("--image-root", help="the photos (file_name relative to it); for a URL, the folder to pull into")
    p.add_argument("-o", "--output", help="the COCO JSON to write")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input format (default: detected)")
    p.add_argument("--classes", nargs="+", help="class names in order (default: discovered, sorted)")
    p.add_argument("--class-map", nargs="+", default=[], metavar="LABEL=CLASS", help="rename/merge labels")
    p.add_argument("--unknown", default="error", choices=("error", "skip"), help="labels outside --classes")
    p.add_argument("--on-error", default="error", choices=("error", "skip"), help="invalid item: exit 2|skip")
    p.add_argument("--report", nargs="?", const="", metavar="DIR",
                   help="write a validation report (default DIR: <OUT>_report, or ./report)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with exit_on_user_error():
        if args.output is None and args.report is None and not project_url(args.inputs[0]):  # a URL alone: pull
            raise UserError("nothing to do — pass -o OUT.json and/or --report")
        bad = [m for m in args.class_map if "=" not in m]
        if bad:
            raise UserError(f"--class-map {bad[0]!r}: expected LABEL=CLASS (e.g. Car=car)")
        class_map = dict(m.split("=", 1) for m in args.class_map)
        report = args.report or (f"{Path(args.output).with_suffix('')}_report" if args.output else "report")
        s = convert(args.inputs, args.output, args.image_root, args.format, args.classes, class_map,
                    args.unknown, None if args.report is None else report, args.on_error)
    if s.output:
        print(f"wrote {s.output}: {s.num_images} images, {s.num_annotations} annotations, "
              f"categories {', '.join(f'{i + 1}={c}' for i, c in enumerate(s.thing_classes))} ({s.format})"
              + (f"; skipped {s.invalid} invalid item(s) (--on-error skip)" if s.invalid else ""))
    if s.report is not None:
        print(f"report: {s.report['files']['report.md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
