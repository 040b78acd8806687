"""Generation: audio manifest or instruction file -> hypotheses JSONL + summary."""
