"""fairseq2 recipes of the SpeechMapper plugin; run each with ``python -m recipes.<name>``."""
