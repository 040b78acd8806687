"""Stage 1 end to end: synthesised speech -> manifest -> features -> projector.

Runs the real recipes as subprocesses with the tiny SeamlessM4T encoder and the
tiny HF-format Llama built for the session.
"""

from __future__ import annotations

import glob
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.support.audio import has_espeak
from tests.support.cards import SessionCards
from tests.support.corpus import (
    STAGE1_STEPS,
    SpeechCorpus,
    run_stage1,
    shuffled_control_store,
    stage1_args,
)
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.llm import training_sentences
from tests.support.recipes import (
    REPO,
    read_metrics,
    recipe_command,
    recipe_env,
    run_python,
    run_recipe,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox"),
]


@pytest.fixture(scope="module")
def features(speech_corpus: SpeechCorpus) -> Path:
    return speech_corpus.features


def last_model_state(out: Path, step: int) -> dict[str, torch.Tensor]:
    (path,) = glob.glob(
        str(out / f"checkpoints/step_{step}/model/**/*.pt"), recursive=True
    )
    state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return state


def test_stage1_fits_its_training_split(stage1_run: Path) -> None:
    out = stage1_run

    valid = read_metrics(out, "valid/train")
    first, last = valid[0], valid[-1]
    assert first["Step"] == 0 and last["Step"] == STAGE1_STEPS
    assert first["mse_word"] >= 5 * last["mse_word"], (
        first["mse_word"],
        last["mse_word"],
    )
    assert last["embedding_wer"] < 50.0, last["embedding_wer"]
    assert last["cosine_word"] > first["cosine_word"]

    # The unusable utterance was skipped, counted and listed.
    log = (out / "logs/rank_0.log").read_text()
    assert "kept 40 of 41 examples; skipped 1 transcript_too_long" in log
    assert (
        (out / "skipped/train.tsv")
        .read_text()
        .splitlines()[1]
        .startswith("0\tdense\ttranscript_too_long\t")  # line 0: named by id
    )

    # The checkpoint card names the target LLM and loads as `last_checkpoint`.
    assert "target_llm: test_llama" in (out / "checkpoints/model.yaml").read_text()
    script = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from fairseq2 import init_fairseq2\n"
        "from fairseq2.composition import register_checkpoint_models\n"
        "init_fairseq2(extras=lambda c: register_checkpoint_models(c, Path(sys.argv[1])))\n"
        "from fairseq2.models import load_model\n"
        "m = load_model('last_checkpoint', device=torch.device('cpu'))\n"
        "print(m.config.target_llm, sum(p.sum().item() for p in m.parameters()))\n"
    )
    llm, checksum = run_python("-c", script, str(out / "checkpoints")).split()
    assert llm == "test_llama"
    expected = sum(v.sum().item() for v in last_model_state(out, STAGE1_STEPS).values())
    assert float(checksum) == pytest.approx(expected, rel=1e-6)


HELD_OUT_MSE_MARGIN = 0.015
"""Held-out ``mse_word`` by which the real pairs must beat the shuffled
control: 0.39 vs 0.43 measured (a gap of 0.038)."""

HELD_OUT_WER_MARGIN = 2.0
"""Points of held-out embedding WER by which the real pairs must beat the
control: 81.3 % vs 86.3 % measured (a gap of 5 points, 7 of the ~140 words of
16 sentences; 40 training utterances teach little beyond their own)."""


def test_stage1_beats_a_shuffled_control_on_held_out_speech(
    stage1_run: Path,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
    tmp_path: Path,
) -> None:
    """Held-out sentences in a voice no training utterance has: the projector
    trained on the real pairs must map them closer to their transcripts'
    embeddings than one trained the same way on the same features with the
    transcripts permuted (which can only learn biases: frequent tokens,
    lengths). Measured at 600 steps: embedding WER 81.3 % vs 86.3 %,
    ``mse_word`` 0.391 vs 0.429 (both runs fit their own pairs: WER 0 on
    them)."""
    control = run_stage1(
        tmp_path / "control",
        speech_corpus,
        test_cards,
        train_features=shuffled_control_store(speech_corpus, tmp_path / "store"),
    )

    real_dev = read_metrics(stage1_run, "valid/dev")
    control_dev = read_metrics(control, "valid/dev")
    # Same initialisation: the runs differ only in the pairing.
    assert real_dev[0]["mse_word"] == control_dev[0]["mse_word"]
    assert real_dev[0]["Number of Examples"] == len(speech_corpus.held_out_ids)
    real, shuffled = real_dev[-1], control_dev[-1]
    assert real["Step"] == shuffled["Step"] == STAGE1_STEPS
    assert real["embedding_wer"] < shuffled["embedding_wer"] - HELD_OUT_WER_MARGIN, (
        real["embedding_wer"],
        shuffled["embedding_wer"],
    )
    assert real["mse_word"] < shuffled["mse_word"] - HELD_OUT_MSE_MARGIN, (
        real["mse_word"],
        shuffled["mse_word"],
    )
    # The control did learn its own (shuffled) pairs: the gap is not a
    # control that failed to train.
    control_train = read_metrics(control, "valid/train")
    assert control_train[0]["mse_word"] >= 5 * control_train[-1]["mse_word"]


def test_killed_run_resumes_to_identical_weights(
    features: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    args = stage1_args(
        features,
        test_cards,
        "regime.num_steps=100",
        "regime.checkpoint_every_n_steps=20",
        "regime.validate_every_n_steps=100",
        "regime.validate_at_start=false",
        "regime.keep_last_n_checkpoints=2",
    )

    reference = tmp_path / "uninterrupted"
    run_recipe("stage1", reference, *args)

    out = tmp_path / "killed"
    log = out / "logs/rank_0.log"
    proc = subprocess.Popen(
        recipe_command("stage1", out, *args),
        cwd=REPO,
        env=recipe_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (log.exists() and "Checkpoint at step 40 saved" in log.read_text()):
            assert proc.poll() is None, "stage 1 ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint at step 40"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoints/step_100").exists()

    done = run_recipe("stage1", out, *args)
    assert (
        "Restoring training from the last checkpoint at step"
        in done.stdout + done.stderr + (out / "logs/rank_0.log").read_text()
    )

    resumed, uninterrupted = (
        last_model_state(out, 100),
        last_model_state(reference, 100),
    )
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_projector_width_must_match_the_llm(
    features: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    done = run_recipe(
        "stage1",
        tmp_path / "bad",
        *stage1_args(features, test_cards, "model.config_overrides.output_dim=32"),
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert (
        "`output_dim` of the projector (32) does not match the embedding width of test_llama (64)"
        in output
    )
    assert "Traceback" not in output


def test_non_finite_features_are_skipped_and_counted(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    sentences = training_sentences(400)[80:92]
    utterances = []
    for i, sentence in enumerate(sentences):
        feats = torch.randn(90, 64, generator=torch.Generator().manual_seed(i))
        if i in (3, 7):
            feats[5, 1] = float("nan") if i == 3 else float("inf")
        utterances.append(Utterance(f"u{i}", feats, sentence))
    store = write_feature_store(tmp_path / "store", utterances)

    out = tmp_path / "stage1"
    run_recipe(
        "stage1",
        out,
        *stage1_args(
            store,
            test_cards,
            "regime.num_steps=20",
            "regime.validate_every_n_steps=20",
            "lr_scheduler.config.num_warmup_steps=5",
            "dataset.batch_size=12",
        ),
    )
    train = read_metrics(out, "train")
    assert sum(r["num_skipped_non_finite"] for r in train) == 2 * 20
    assert all(r["Number of Examples"] == 10 * 10 for r in train)
    assert all(math.isfinite(r["Loss"]) for r in train)
    valid = read_metrics(out, "valid/train")
    assert valid[-1]["num_skipped_non_finite"] == 2


def test_validating_the_training_split_with_a_smaller_frame_budget(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    """Validation on the training split reads it once; utterances over the
    validation budget are left out of validation only, and listed."""
    sentences = training_sentences(400)[100:110]
    lengths = [90 + 6 * i for i in range(len(sentences))]  # 90 ... 144 frames
    utterances = [
        Utterance(
            f"u{i}",
            torch.randn(n, 64, generator=torch.Generator().manual_seed(i)),
            sentence,
        )
        for i, (n, sentence) in enumerate(zip(lengths, sentences, strict=True))
    ]
    store = write_feature_store(tmp_path / "store", utterances)
    valid_budget = 120
    too_long = {f"u{i}" for i, n in enumerate(lengths) if n > valid_budget}

    out = tmp_path / "stage1"
    run_recipe(
        "stage1",
        out,
        *stage1_args(
            store,
            test_cards,
            "regime.num_steps=10",
            "regime.validate_every_n_steps=10",
            "lr_scheduler.config.num_warmup_steps=5",
            "dataset.max_num_frames=2000",
            f"dataset.max_num_valid_frames={valid_budget}",
        ),
    )

    train = read_metrics(out, "train")
    assert sum(r["Number of Examples"] for r in train) == 10 * len(sentences)
    valid = read_metrics(out, "valid/train")
    assert valid[-1]["Number of Examples"] == len(sentences) - len(too_long)
    listed = (out / "skipped/valid/train.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[1] for line in listed} == too_long  # line, id, ...
    assert not (out / "skipped/train.tsv").exists()


def test_two_processes_split_the_data(test_cards: SessionCards, tmp_path: Path) -> None:
    sentences = training_sentences(400)[80:88]
    utterances = [
        Utterance(
            f"u{i}", torch.randn(90, 64, generator=torch.Generator().manual_seed(i)), s
        )
        for i, s in enumerate(sentences)
    ]
    store = write_feature_store(tmp_path / "store", utterances)

    out = tmp_path / "ddp"
    run_recipe(
        "stage1",
        out,
        *stage1_args(
            store,
            test_cards,
            "regime.num_steps=10",
            "regime.validate_every_n_steps=10",
            "lr_scheduler.config.num_warmup_steps=2",
            "regime.validate_at_start=false",
            "dataset.batch_size=2",
        ),
        nproc=2,
        timeout=900,
    )

    log = (out / "logs/rank_0.log").read_text()
    assert "Running on 2 process(es)" in log
    assert (out / "logs/rank_1.log").exists()
    # Each rank trains on its own 2 examples per step: 4 per step in total.
    train = read_metrics(out, "train")
    assert train[-1]["Number of Examples"] == 4 * 10
    assert read_metrics(out, "valid/train")[-1]["Number of Examples"] == 8
