"""Video data for training: manifests, aspect-ratio buckets, the clip dataset, the bucket sampler, latent caches."""
