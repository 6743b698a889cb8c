"""Training building blocks shared by ``train_dit.py`` and ``train_vae.py``.

- ``config``: run-config dataclasses, YAML + ``--set`` loading, value checks.
- ``preflight``: config / data / layout checks before any heavy work; ``cli``: exit status 2 with one message.
- ``meta_init``: meta-device build, shard-by-shard materialisation, seeded init, released-weight broadcast.
- ``checkpointing``: sharded DCP checkpoints (any world size, optional async), resume fallback, streaming export
  (``export``: the offline command); ``resume``: what a resumed run keeps and what the config overrides.
- ``state``: EMA weights, ``weights_only`` reads of weight files, the earlier single-file checkpoints.
- ``optim``: AdamW (fused / foreach) and the warmup schedule.
- ``objectives``: per-sample seeded flow-matching draws and loss (paper section 3.1 / spec section 5).
- ``conditioning``: text encoders and the frozen (tiled, half-precision on GPU) VAE for DiT training.
- ``builders``: dataset / sampler / loader from the data config.
- ``monitor``: TensorBoard scalars, throughput (samples/s, tokens/s), MFU on GPU, tqdm.
"""
