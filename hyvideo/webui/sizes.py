"""The video sizes a model offers: the released resolution buckets, or the ones its model tree declares.

Released sizes (HunyuanVideo README, "Resolution / h/w=9:16 / 16:9 / 4:3 / 3:4 / 1:1" table; the same sizes are
the choices of the released ``gradio_server.py``), as H x W pixels at 129 frames:

=====  =========  =========  =========  =========  =======
tier   16:9       9:16       4:3        3:4        1:1
=====  =========  =========  =========  =========  =======
540p   544x960    960x544    624x832    832x624    720x720
720p   720x1280   1280x720   832x1104   1104x832   960x960
=====  =========  =========  =========  =========  =======

(aspect ratios are W:H). A model trained at other sizes (the nano model, a fine-tune) declares them in a
``metadata.json`` beside its DiT weights or at the root of its tree::

    {"resolutions": {"64px": [[64, 64], [48, 80], [80, 48]]},
     "defaults": {"video_length": 9, "infer_steps": 20, "flow_shift": 7.0}}

``resolutions`` maps a tier name to its ``[H, W]`` sizes; ``defaults`` (optional) holds the page's starting values
(keys of :class:`hyvideo.sampling.SampleRequest`); ``max_video_length`` (optional) caps the frame slider.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from hyvideo.pipeline import SIZE_MULTIPLE, VAE_TEMPORAL_RATIO

RELEASED_RESOLUTIONS: dict[str, list[tuple[int, int]]] = {
    "720p": [(720, 1280), (1280, 720), (832, 1104), (1104, 832), (960, 960)],
    "540p": [(544, 960), (960, 544), (624, 832), (832, 624), (720, 720)],
}
RELEASED_MAX_VIDEO_LENGTH = 129  # frames (released sampler)
METADATA_FILE = "metadata.json"
# named W:H aspect ratios a size is labelled with (the nearest one in log ratio)
ASPECT_NAMES = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9", "9:21", "2:1", "1:2", "3:2", "2:3", "5:4", "4:5")
SAMPLE_DEFAULT_KEYS = {"video_length", "infer_steps", "flow_shift", "embedded_guidance_scale", "cfg_scale",
                       "negative_prompt"}


def aspect_name(height: int, width: int) -> str:
    """The W:H name nearest ``width / height`` (e.g. 544x960 -> ``"16:9"``, 1104x832 -> ``"3:4"``)."""
    ratio = width / height

    def dist(name: str) -> float:
        w, h = name.split(":")
        return abs(math.log(ratio) - math.log(int(w) / int(h)))

    return min(ASPECT_NAMES, key=dist)


def orientation(height: int, width: int) -> str:
    return "landscape" if width > height else "portrait" if height > width else "square"


@dataclass
class SizeTable:
    """Tier -> aspect name -> ``(H, W)`` pixels, plus where the table came from and the page defaults.

    Attributes:
        sizes: ``{tier: {aspect: (height, width)}}``, tiers and aspects in display order.
        source: ``"released"`` or the metadata file read.
        defaults: starting values for the page (keys of ``SampleRequest``).
        max_video_length: frames, 4n+1.
    """

    sizes: dict[str, dict[str, tuple[int, int]]]
    source: str = "released"
    defaults: dict = field(default_factory=dict)
    max_video_length: int = RELEASED_MAX_VIDEO_LENGTH

    @classmethod
    def from_resolutions(cls, resolutions: dict[str, list], **kw) -> SizeTable:
        """Build from ``{tier: [[H, W], ...]}``; sizes with the same aspect name in a tier keep the first.

        Raises:
            ValueError: no tiers, a tier without sizes, or a size that is not two positive multiples of 16.
        """
        if not resolutions:
            raise ValueError("no resolutions given")
        sizes: dict[str, dict[str, tuple[int, int]]] = {}
        for tier, hws in resolutions.items():
            if not hws:
                raise ValueError(f"resolution {tier!r} lists no sizes")
            table = sizes.setdefault(str(tier), {})
            for hw in hws:
                h, w = (int(v) for v in hw) if len(hw) == 2 else (0, 0)
                if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
                    raise ValueError(f"size {hw} of resolution {tier!r} is not [H, W] in positive multiples of "
                                     f"{SIZE_MULTIPLE} pixels")
                table.setdefault(aspect_name(h, w), (h, w))
        return cls(sizes, **kw)

    def tiers(self) -> list[str]:
        return list(self.sizes)

    def aspects(self, tier: str) -> list[str]:
        return list(self.sizes.get(tier, {}))

    def size(self, tier: str, aspect: str) -> tuple[int, int]:
        """``(H, W)`` of a tier and aspect.

        Raises:
            ValueError: unknown tier, or an aspect the tier does not have (the message lists what it has).
        """
        if tier not in self.sizes:
            raise ValueError(f"resolution {tier!r} is not offered by this model; allowed: {self.tiers()}")
        if aspect not in self.sizes[tier]:
            raise ValueError(f"aspect ratio {aspect!r} is not offered at {tier}; allowed: {self.aspects(tier)}")
        return self.sizes[tier][aspect]

    def label(self, tier: str, aspect: str) -> str:
        """``"16:9 landscape (544x960)"``: sizes are H x W pixels, as ``--video-size H W``."""
        h, w = self.size(tier, aspect)
        return f"{aspect} {orientation(h, w)} ({h}x{w})"

    def video_lengths(self) -> list[int]:
        """Every allowed frame count, 1, 5, ..., max (4n+1)."""
        return list(range(1, self.max_video_length + 1, VAE_TEMPORAL_RATIO))


def released_table() -> SizeTable:
    return SizeTable.from_resolutions(RELEASED_RESOLUTIONS)


def metadata_paths(model_base: str | Path, dit_weight: str | Path | None = None) -> list[Path]:
    """Where :func:`load_size_table` looks, most specific first: beside the DiT weights, then the tree root."""
    from hyvideo.checkpoint.io import resolve_model_paths  # noqa: PLC0415

    out = []
    try:
        dit = resolve_model_paths(model_base, dit_weight).dit
        out.append((dit if dit.is_dir() else dit.parent) / METADATA_FILE)
    except FileNotFoundError:
        pass
    out.append(Path(model_base) / METADATA_FILE)
    return out


def load_size_table(model_base: str | Path, dit_weight: str | Path | None = None) -> SizeTable:
    """The tree's declared sizes (``metadata.json``, see the module docstring) or the released buckets.

    Raises:
        ValueError: a metadata file that is not valid JSON or holds bad sizes / defaults (names the file).
    """
    for path in metadata_paths(model_base, dit_weight):
        if not path.is_file():
            continue
        try:
            meta = json.loads(path.read_text())
            if "resolutions" not in meta:
                continue
            defaults = dict(meta.get("defaults", {}))
            unknown = set(defaults) - SAMPLE_DEFAULT_KEYS
            if unknown:
                raise ValueError(f"unknown defaults {sorted(unknown)}; allowed: {sorted(SAMPLE_DEFAULT_KEYS)}")
            max_len = int(meta.get("max_video_length", RELEASED_MAX_VIDEO_LENGTH))
            if max_len < 1 or (max_len - 1) % VAE_TEMPORAL_RATIO:
                raise ValueError(f"max_video_length {max_len} is not 4n+1 frames")
            return SizeTable.from_resolutions(meta["resolutions"], source=str(path), defaults=defaults,
                                              max_video_length=max_len)
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: {e}") from None
    return released_table()


def describe(table: SizeTable) -> str:
    """One line per tier: ``"720p: 16:9 720x1280, 9:16 1280x720, ..."`` (H x W)."""
    return "\n".join(f"{t}: " + ", ".join(f"{a} {h}x{w}" for a, (h, w) in table.sizes[t].items())
                     for t in table.tiers())
