"""Seed 003: the refusal direction (Arditi et al. 2024) — candidates, selection, ablation, orthogonalised weights (kind ``refusal_direction``)."""
