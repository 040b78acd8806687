"""The serving tests' shared pieces: an exported tiny projector, the
reference pipeline, and ``speechmapper serve`` in a subprocess."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
from fairseq2.models import load_model

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.export.projector import (
    ProjectorProvenance,
    SpeechEncoderProvenance,
    export_projector,
)
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.speech_llm import PipelineResult, SpeechMapperPipeline
from tests.support.audio import tone, write_wav

PROJECTOR_CARD = "test_projector_llama"  # tiny arch, target_llm test_llama
SFM = SpeechEncoderProvenance(
    card="test_sm4t_hf", layer=4, layer_norm=True, frame_averaging=2
)
EXPORT_NAME = "served_projector"


def export_test_projector(out: Path) -> Path:
    """``test_projector_llama`` exported as trained on ``test_sm4t_hf`` layer 4
    with LayerNorm: the export names its speech encoder and its LLM."""
    projector = load_model(PROJECTOR_CARD, device=torch.device("cpu"))
    export_projector(
        projector,  # type: ignore[arg-type]
        out,
        name=EXPORT_NAME,
        provenance=ProjectorProvenance(
            sfm=SFM, pad_token="<|finetune_right_pad_id|>", stage="stage1"
        ),
    )
    return out


MAX_NEW_TOKENS = 8
"""The served answers' budget (``--max-new-tokens``): short answers keep the
subprocess tests fast."""


def reference_pipeline() -> SpeechMapperPipeline:
    """What the served export is, loaded through the session's own cards:
    the same weights, encoder layer and LayerNorm."""
    return SpeechMapperPipeline.from_cards(
        SFM.card,
        PROJECTOR_CARD,
        "test_llama",
        device="cpu",
        sfm_layer=SFM.layer,
        sfm_layer_norm=SFM.layer_norm,
        generation=GenerationConfig(max_new_tokens=MAX_NEW_TOKENS),
    )


def export_arguments(export: Path, card_dir: Path) -> tuple[str, ...]:
    """``EXPORT --asset-dir CARDS --device cpu``: the export on the session's
    test cards, as ``speechmapper serve`` and ``speechmapper demo`` take it."""
    return (str(export), "--asset-dir", str(card_dir), "--device", "cpu")


def long_recording(
    path: Path, pipeline: SpeechMapperPipeline, *, seconds: float, freqs: list[float]
) -> torch.Tensor:
    """Tones of ``seconds`` each, one per frequency, written to ``path``: a
    recording the tiny models cannot take in one call (checked); as loaded."""
    audio = torch.cat(
        [torch.from_numpy(tone(seconds, freq=f, seed=i)) for i, f in enumerate(freqs)]
    )
    waveform = load_audio(write_wav(path, audio.numpy()))
    try:
        pipeline.check_audio(waveform.numel(), pipeline.prompts.transcription())
    except ValueError:
        return waveform
    raise AssertionError(f"{path} is not too long for one call")


def window_results(
    pipeline: SpeechMapperPipeline,
    waveform: torch.Tensor,
    instruction: str,
    *,
    seconds: float = 15.0,
) -> list[PipelineResult]:
    """The reference for fixed-window long-form answers: each window of
    ``seconds``, cut by hand, answered alone."""
    window = int(seconds * 16_000)
    return [
        pipeline.run(waveform[a : a + window], instruction)[0]
        for a in range(0, waveform.numel(), window)
    ]


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    """``http://127.0.0.1:PORT``."""

    process: subprocess.Popen[bytes]


@contextmanager
def serve(
    *args: str,
    cwd: Path,
    timeout: float = 120.0,
    module: str = "speechmapper_plugin.serving",
    ready_path: str = "/health",
) -> Iterator[Server]:
    """``python -m MODULE ARGS --port P`` (``speechmapper serve`` by default,
    ``speechmapper_plugin.demo`` for the demo page) until ``ready_path``
    answers 200; stopped (by its pid) on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SPEECHMAPPER_API_KEY"}
    env |= {"OMP_NUM_THREADS": "1", "FAIRSEQ2_NO_PROGRESS": "1"}
    log = cwd / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"`python -m {module}` exited ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(url + ready_path, timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {ready_path} in {timeout} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
