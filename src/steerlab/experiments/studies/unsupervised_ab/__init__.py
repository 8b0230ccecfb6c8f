"""Seed 002: unsupervised steering vectors scored by A/B answer logits (kind ``unsupervised_ab``)."""
