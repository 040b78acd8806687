"""The SFM x adapter x LLM grid of Verdini et al. 2024 as one command."""
