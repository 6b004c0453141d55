"""Runs queued together: the study's presets x seeds and sweeps of settings, with their tables and charts."""
