"""fairseq2 dataset families used by the training recipes."""
