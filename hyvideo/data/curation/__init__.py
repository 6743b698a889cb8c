"""Data curation: raw videos -> scored clips -> five training tiers with structured captions.

Stages (HunyuanVideo, arXiv 2412.03603, section "Data Pre-processing"), one module each:
``shots`` (PySceneDetect split, clip lengths), ``clarity`` (Laplacian variance), ``motion`` (DIS optical
flow), ``text_area`` (PP-OCRv4 detector), ``scorers`` (watermark / aesthetic models from local paths),
``camera`` (14-class camera movement), ``embeddings`` (dedup, K-means balancing), ``tiers``, ``captions``;
``measure.process_video`` runs them on one video, ``shards`` / ``runner`` run many (local processes or
Ray Data) and write the Parquet manifests. CLI: ``scripts/curate.py``. Thresholds: ``configs/curation``.
"""
