"""Distribution applied from outside the models: process groups and meshes, sequence parallelism (Ulysses),
activation checkpointing, per-block compile and FSDP2, in that order (STYLE.md section 9.5)."""
