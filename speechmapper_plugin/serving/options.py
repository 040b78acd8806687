"""``speechmapper serve``'s options as one picklable value: what a server
process (or a Ray Serve replica on another node) needs to load its engine and
build its app, without ``argparse`` and without importing Ray."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.serving.audio import AudioLimits
from speechmapper_plugin.serving.engine import SpeechEngine

DTYPES: Final = ("float32", "bfloat16", "float16")
"""``--dtype``'s choices: the projector's and the LLM's."""


@dataclass(frozen=True)
class ServeOptions:
    """The model to load and how to serve it; paths are made absolute where
    the command was started (a replica may run in another directory)."""

    projector: str
    """An export directory or a projector's asset card name."""

    asset_dirs: tuple[str, ...] = ()
    llm: str | None = None
    speech_encoder: str | None = None
    model_name: str | None = None
    device: str | None = None
    dtype: str = "float32"
    max_new_tokens: int = 256
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    step_delay_ms: float = 0.0
    """A pause after each decoding step of a streamed batch (tests, demos)."""
    api_key: str | None = None
    limits: AudioLimits = AudioLimits()
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    """How audio longer than the models take is cut (transcriptions and
    translations answer per segment)."""

    @classmethod
    def model_options(cls, args: argparse.Namespace) -> ServeOptions:
        """The model to load, from the arguments :func:`add_model_arguments`
        adds (``speechmapper serve`` and ``speechmapper demo`` load alike);
        the rest keep their defaults."""
        projector = Path(args.projector)
        return cls(
            projector=(
                str(projector.resolve()) if projector.is_dir() else args.projector
            ),
            asset_dirs=tuple(str(Path(d).resolve()) for d in args.asset_dir),
            llm=args.llm,
            speech_encoder=args.speech_encoder,
            device=args.device,
            dtype=args.dtype,
            max_new_tokens=args.max_new_tokens,
            segmenter=SegmenterConfig(
                kind=args.segmenter,
                max_seconds=args.segment_seconds,
                vad_threshold=args.vad_threshold,
                speech_pad_ms=args.vad_pad_ms,
                speech_pad_end_ms=args.vad_pad_end_ms,
            ),
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        """From ``speechmapper serve``'s parsed arguments."""
        return replace(
            cls.model_options(args),
            model_name=args.model_name,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            step_delay_ms=args.step_delay_ms,
            api_key=args.api_key or None,
            limits=AudioLimits(
                max_bytes=int(args.max_upload_mb * 1024 * 1024),
                max_seconds=args.max_audio_seconds,
            ),
        )

    def register_assets(self) -> None:
        """Register the asset cards (``asset_dirs`` and an export directory)
        in this process's fairseq2 (once per process, before any card is read)."""
        from speechmapper_plugin.serving.loading import register_assets

        export_dir = Path(self.projector)
        register_assets(
            [
                *map(Path, self.asset_dirs),
                *([export_dir] if export_dir.is_dir() else []),
            ]
        )

    def check_cards(self) -> None:
        """Register the cards and check that the projector and its LLM are
        named, without loading a model (a launcher's early, clear refusal).

        :raises ValueError: naming what is missing.
        """
        from speechmapper_plugin.serving.loading import projector_cards

        self.register_assets()
        projector_cards(self.projector, self.llm)

    def create_app(self, engine: SpeechEngine) -> FastAPI:
        """The HTTP API on ``engine`` with these options (key, limits)."""
        from speechmapper_plugin.serving.app import create_app

        return create_app(
            engine,
            api_key=self.api_key,
            limits=self.limits,
            segmenter=self.segmenter,
        )

    def load_engine(self) -> SpeechEngine:
        """Register the cards, then load the engine."""
        import torch

        from speechmapper_plugin.serving.loading import load_engine

        self.register_assets()
        return load_engine(
            self.projector,
            llm=self.llm,
            speech_encoder=self.speech_encoder,
            model_name=self.model_name,
            device=self.device,
            dtype=getattr(torch, self.dtype),
            max_new_tokens=self.max_new_tokens,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            step_delay_ms=self.step_delay_ms,
        )


def add_model_arguments(
    parser: argparse.ArgumentParser, *, max_new_tokens_note: str = ""
) -> None:
    """The model's arguments, read by :meth:`ServeOptions.model_options`:
    ``PROJECTOR``, ``--llm``, ``--speech-encoder``, ``--asset-dir``,
    ``--host``, ``--device``, ``--dtype``, ``--max-new-tokens``,
    ``--segmenter``, ``--segment-seconds`` and the VAD's ``--vad-threshold``,
    ``--vad-pad-ms`` and ``--vad-pad-end-ms`` (each command adds its own
    ``--port``); ``max_new_tokens_note`` ends ``--max-new-tokens``'s help."""
    parser.add_argument(
        "projector",
        help="an export directory (speechmapper export) or a projector's asset card name",
    )
    parser.add_argument(
        "--llm", help="the LLM's card (default: the one the projector was trained for)"
    )
    parser.add_argument(
        "--speech-encoder",
        help="the speech encoder's card (default: the one the projector records)",
    )
    parser.add_argument(
        "--asset-dir",
        action="append",
        default=[],
        type=Path,
        help="a directory of asset cards to register (repeatable)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)"
    )
    parser.add_argument("--device", help="default: CUDA if available, else CPU")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="of the projector and the LLM",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=256,
        help="the most tokens an answer (or a segment's answer) may have"
        + (f" ({max_new_tokens_note})" if max_new_tokens_note else ""),
    )
    parser.add_argument(
        "--segmenter",
        choices=("fixed", "vad"),
        default="fixed",
        help="how audio longer than the models take is cut: fixed windows or "
        "speech regions (Silero VAD)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=30.0,
        help="longest segment (lowered to what the projector and LLM take)",
    )
    vad = SegmenterConfig()
    parser.add_argument(
        "--vad-threshold",
        type=float,
        default=vad.vad_threshold,
        help="with --segmenter vad: Silero VAD's speech probability threshold",
    )
    parser.add_argument(
        "--vad-pad-ms",
        type=int,
        default=vad.speech_pad_ms,
        help="with --segmenter vad: silence kept before each speech region "
        "(and after it, unless --vad-pad-end-ms)",
    )
    parser.add_argument(
        "--vad-pad-end-ms",
        type=int,
        default=vad.speech_pad_end_ms,
        help="with --segmenter vad: silence kept after each speech region (README "
        "'Long recordings': 30 before, 300 after suits models trained on single "
        "utterances)",
    )


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray``, ``--replicas`` and ``--address`` on ``speechmapper serve``
    (here, not in the Ray module, so ``--help`` does not import Ray)."""
    parser.add_argument(
        "--ray",
        action="store_true",
        help="serve on Ray Serve: `--replicas` replicas, one GPU each where the cluster has GPUs",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="with --ray: replicas (default: 1)"
    )
    parser.add_argument(
        "--address",
        help="with --ray: the Ray cluster to join (`auto`: the one `ray start` began on this node; default: $RAY_ADDRESS, that one, or else a new local one)",
    )
