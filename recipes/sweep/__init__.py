"""Sweeps of the loss weights: stage 2 over σ values (and stage 1 over α values), each run evaluated on held-out prompts."""
