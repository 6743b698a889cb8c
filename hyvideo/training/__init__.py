"""Training building blocks shared by ``train_dit.py`` and ``train_vae.py``.

- ``config``: run-config dataclasses, YAML + ``--set`` loading.
- ``state``: EMA weights, atomic training checkpoints (model, EMA, optimizer, scheduler, sampler, RNG), export.
- ``optim``: AdamW and the warmup schedule.
- ``objectives``: per-sample seeded flow-matching draws and loss (paper section 3.1 / spec section 5).
- ``conditioning``: text encoders and VAE latents for DiT training (on the fly or from a latent cache).
- ``builders``: dataset / sampler / loader from the data config.
- ``monitor``: TensorBoard scalars, throughput, MFU, tqdm.
"""
