"""Model families of the plugin: one sub-package per family, fairseq2 style."""
