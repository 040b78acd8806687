"""Embedding Error Threshold (EET) calibration of a target LLM."""
