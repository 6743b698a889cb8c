"""Validate the nano attribute detector on rendered ground-truth clips of the evaluation conditions.

    python scripts/validate_nano_detector.py --num-clips 624 --blur-factors 1 2 4 8

Clips: one object, no camera move, plain or gradient background, 64x64, 17 frames (configs/nano/dataset.yaml),
cycling through every valid colour x shape x motion triple; --blur-factors adds an area-down / bicubic-up blur
per factor (a stand-in for a lossy VAE). Prints per-attribute accuracy and the most common errors per factor, and
exits with status 1 when an attribute is below --min-accuracy at any factor listed in --required-factors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyvideo.data.synthetic.validation import validate_detector  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-clips", type=int, default=624, help="clips per blur factor (default 624 = 2 x 312 triples)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blur-factors", type=int, nargs="+", default=[1, 2, 4, 8], help="down-up blur factors")
    ap.add_argument("--required-factors", type=int, nargs="*", default=[1, 2],
                    help="factors at which every attribute must reach --min-accuracy (default 1 2)")
    ap.add_argument("--min-accuracy", type=float, default=0.98)
    ap.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    args = ap.parse_args(argv)
    if args.num_clips < 1 or any(f < 1 for f in args.blur_factors):
        ap.error(f"--num-clips and --blur-factors must be >= 1, got {args.num_clips}, {args.blur_factors}")
    if not 0 < args.min_accuracy <= 1:
        ap.error(f"--min-accuracy must be in (0, 1], got {args.min_accuracy}")
    report, ok = {}, True
    for f in args.blur_factors:
        r = validate_detector(args.num_clips, args.seed, f, progress=True)
        errors = [[*k, n] for k, n in r["errors"].most_common(8)]
        report[f"x{f}"] = {"accuracy": r["accuracy"], "top_errors": errors, "seconds": r["seconds"]}
        print(f"blur x{f}: " + ", ".join(f"{a} {v:.2%}" for a, v in r["accuracy"].items()) + f"  ({r['seconds']} s)")
        if f in args.required_factors and min(r["accuracy"].values()) < args.min_accuracy:
            ok = False
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"report: {args.out}")
    print(json.dumps(report, indent=1))
    if not ok:
        print(f"FAILED: an attribute is below {args.min_accuracy:.0%} at factors {args.required_factors}",
              file=sys.stderr)
        sys.exit(1)
    return report


if __name__ == "__main__":
    main()
