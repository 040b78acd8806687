"""fairseq2 recipes of the SpeechMapper plugin; run each with ``speechmapper
<command>`` (:mod:`recipes.cli`) or ``python -m recipes.<name>``."""
