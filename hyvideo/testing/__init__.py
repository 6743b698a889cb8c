"""Tiny random models and offline tokenizers in the released on-disk layouts, for tests, smoke runs and demos.

Nothing here is used by sampling or training of real models: ``tiny_text`` builds small Llama / CLIP text
encoders and tokenizers without any download (``scripts/make_tiny_checkpoints.py`` writes them into a model
tree; the nano model keeps such frozen encoders).
"""
