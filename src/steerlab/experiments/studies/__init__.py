"""One folder per study; each registers its experiment kind(s) on import.

    refusal/            seeds 000/001: CAA refusal vectors, the fair 4-way comparison (refusal_study)
    refusal_direction/  seed 003: the refusal direction, ablation, orthogonalised weights
    unsupervised_ab/    seed 002: MELBO / power-iteration / random vectors scored on A/B questions
    prefs/              seed 004: stated and revealed preferences (the seven prefs_* kinds)

A folder holds its config model, records, data, flow, summary, report and plots; the engine
finds a kind through ``KIND_MODULES`` in :mod:`steerlab.experiments.engine.registry`.
"""
