"""Weight quantisation for inference (FP8 e4m3 storage with bf16 compute)."""
