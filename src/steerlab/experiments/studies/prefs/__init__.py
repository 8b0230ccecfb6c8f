"""Seed 004: LLM preference measurement — the seven ``prefs_*`` kinds on one shared pipeline (``common``)."""
