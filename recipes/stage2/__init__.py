"""Stage 2: attach the projector to the frozen LLM and instruction-tune it."""
