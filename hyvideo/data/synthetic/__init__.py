"""hyvideo-nano: a procedurally rendered, captioned text-to-video data set and its attribute detector.

Public API (import from the submodules; nothing heavy is imported here):

- ``attributes``: ``load_nano_config()``, ``heldout_triples()``, ``ClipSpec``, ``ObjectSpec``
  (vocabulary and held-out triples live in ``configs/nano/dataset.yaml``).
- ``sampling``: ``sample_clip_spec(rng)``, ``sample_video(rng)``, ``sample_negative(kind, rng)``,
  ``sample_joined(rng)``, ``eval_spec(triple, seed)``.
- ``render``: ``render_shot(spec)``, ``render_video(shots)``, ``render_eval_clip(triple, seed)`` (64x64x17).
- ``captions``: ``prompt_for(triple)``, ``structured_caption(spec)``, ``AttributeCaptioner`` (curation).
- ``dataset``: ``generate(out_dir, num_videos, seed)`` (``scripts/make_nano_dataset.py``).
- ``detect``: ``detect(frames) -> Detection``, ``degrade(frames, factor)``.
- ``validation``: ``validate_detector(num_clips)``, ``accuracy(truth, predicted)``
  (``scripts/validate_nano_detector.py``).
"""
