"""Stage 1: LLM-free pretraining of the SpeechMapper projector."""
