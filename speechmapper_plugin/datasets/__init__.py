"""The fairseq2 dataset families: audio manifests
(``speechmapper_audio_manifest``: :mod:`.audio_manifest`, read by
:mod:`.waveform_reader`), stage-1 speech features (:mod:`.speech_features`)
and stage-2 instructions (:mod:`.instructions`), with their batching and skip
reports. The formats they read live in :mod:`speechmapper_plugin.data`.
"""
