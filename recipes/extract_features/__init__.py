"""Feature extraction: an audio manifest -> a sharded, resumable feature store."""
