"""A (nearly) zero pad row: both stages refuse to start unless it is allowed.

Llama 3.1's pad target ``<|finetune_right_pad_id|>`` was a reserved token, and
reserved Llama-3 rows are reported all zero. The tiny Llama here has its pad
row zeroed in its checkpoint; the thresholds are checked on a table whose row
norms are written out by hand.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from fairseq2.assets import AssetCard, get_asset_store
from safetensors.torch import load_file, save_file

from recipes.common import TranscriptTargetsSection, load_target_tokens
from speechmapper_plugin.llm.target_embeddings import (
    PAD_NORM_MIN_RATIO,
    PAD_NORM_WARN_RATIO,
    WeakPadRowError,
    report_pad_row,
    resolve_target_tokens,
)
from tests.support.cards import SessionCards
from tests.support.corpus import stage1_args
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.llm import training_sentences
from tests.support.recipes import run_recipe

ZERO_PAD_CARD = "test_llama_zero_pad"
EMBED_KEY = "model.embed_tokens.weight"

SHORT_RUN = (
    "regime.num_steps=2",
    "regime.validate_at_start=false",
    "regime.validate_every_n_steps=2",
    "regime.checkpoint_every_n_steps=2",
    "regime.publish_metrics_every_n_steps=2",
    "lr_scheduler.config.num_warmup_steps=1",
)


def _hand_table(pad_norm: float) -> torch.Tensor:
    """Rows of norms 1, 2, 3, 4 and the pad row (index 4) of norm
    ``pad_norm`` < 1: the median of the five norms is 2, the ratio
    ``pad_norm / 2``."""
    table = torch.zeros(5, 2)
    for i, norm in enumerate((1.0, 2.0, 3.0, 4.0)):
        table[i] = torch.tensor([0.6, 0.8]) * norm
    table[4] = torch.tensor([0.0, 1.0]) * pad_norm
    return table


def test_a_zero_pad_row_is_refused_naming_both_norms_and_the_remedies() -> None:
    with pytest.raises(WeakPadRowError) as info:
        report_pad_row("some_llm", _hand_table(0.0), "<pad>", 4)

    message = str(info.value)
    assert "'<pad>' (id 4)" in message
    assert "row norm of 0," in message
    assert "median row norm 2 " in message
    assert "target_llm.pad_token" in message
    assert "target_llm.allow_weak_pad_row=true" in message


@pytest.mark.parametrize(
    ("pad_norm", "refused", "warned"),
    [
        (0.019, True, True),  # ratio 0.0095 < 0.01
        (0.021, False, True),  # ratio 0.0105: only a warning
        (0.19, False, True),  # ratio 0.095 < 0.1
        (0.21, False, False),  # ratio 0.105
    ],
)
def test_the_thresholds_on_hand_worked_ratios(
    pad_norm: float, refused: bool, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    assert (PAD_NORM_MIN_RATIO, PAD_NORM_WARN_RATIO) == (0.01, 0.1)
    table = _hand_table(pad_norm)

    with caplog.at_level(logging.INFO, logger="fairseq2"):
        if refused:
            with pytest.raises(WeakPadRowError):
                report_pad_row("some_llm", table, "<pad>", 4)
        else:
            ratio = report_pad_row("some_llm", table, "<pad>", 4)
            assert ratio == pytest.approx(pad_norm / 2, rel=1e-6)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == (1 if warned and not refused else 0)


def test_the_opt_out_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fairseq2"):
        ratio = report_pad_row(
            "some_llm", _hand_table(0.0), "<pad>", 4, allow_weak=True
        )

    assert ratio == 0.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "untrained" in warnings[0].getMessage()


@pytest.fixture(scope="module")
def zero_pad_llama(
    test_cards: SessionCards, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny Llama with its ``<|finetune_right_pad_id|>`` row zeroed in the
    checkpoint, and a card ``test_llama_zero_pad`` (in the returned folder)
    that is ``test_llama`` with this checkpoint."""
    root = tmp_path_factory.mktemp("zero_pad_llama")
    checkpoint = root / "checkpoint"
    shutil.copytree(test_cards.llms.llama_dir, checkpoint)

    pad_idx = resolve_target_tokens(test_cards.llms.llama_card).pad_idx
    state = load_file(checkpoint / "model.safetensors")
    assert float(state[EMBED_KEY][pad_idx].norm()) > 0  # a trained row before
    state[EMBED_KEY][pad_idx] = 0.0
    save_file(state, checkpoint / "model.safetensors", metadata={"format": "pt"})

    card_dir = root / "cards"
    card_dir.mkdir()
    card = {"name": ZERO_PAD_CARD, "base": test_cards.llms.llama_card}
    card["checkpoint"] = str(checkpoint)
    (card_dir / "zero_pad.yaml").write_text(yaml.safe_dump(card))
    return root


def _zero_pad_card(zero_pad_llama: Path, test_cards: SessionCards) -> AssetCard:
    base = get_asset_store().retrieve_card(test_cards.llms.llama_card)
    fields = {"checkpoint": str(zero_pad_llama / "checkpoint")}
    return AssetCard(ZERO_PAD_CARD, fields, base=base)


def test_both_stages_refuse_the_zero_row_and_accept_it_when_allowed(
    zero_pad_llama: Path, test_cards: SessionCards
) -> None:
    card = _zero_pad_card(zero_pad_llama, test_cards)

    # Stage 1 reads the table from the checkpoint; stage 2 attaches its LLM's.
    with pytest.raises(WeakPadRowError, match="row norm of 0,"):
        load_target_tokens(TranscriptTargetsSection(), card).read_table()  # type: ignore[arg-type]
    allowed = TranscriptTargetsSection(allow_weak_pad_row=True)
    table = load_target_tokens(allowed, card).read_table().table  # type: ignore[arg-type]
    pad_idx = load_target_tokens(allowed, card).pad_idx  # type: ignore[arg-type]
    assert float(table[pad_idx].norm()) == 0.0

    with pytest.raises(WeakPadRowError, match="row norm of 0,"):
        load_target_tokens(TranscriptTargetsSection(), card).with_table(table)  # type: ignore[arg-type]
    targets = load_target_tokens(allowed, card).with_table(table)  # type: ignore[arg-type]
    assert targets.allow_weak_pad_row and targets.pad_idx == pad_idx

    # Control: another pad token, a trained row, is accepted without opt-out.
    eot = TranscriptTargetsSection(pad_token="<|eot_id|>")
    assert load_target_tokens(eot, card).with_table(table).pad_token == "<|eot_id|>"  # type: ignore[arg-type]


def _stage1_run(
    zero_pad_llama: Path, test_cards: SessionCards, out: Path, *overrides: str
) -> tuple[int, str]:
    sentences = training_sentences(400)[120:126]
    utterances = [
        Utterance(
            f"u{i}",
            torch.randn(90, 64, generator=torch.Generator().manual_seed(i)),
            sentence,
        )
        for i, sentence in enumerate(sentences)
    ]
    store = write_feature_store(out.parent / "store", utterances)
    args = stage1_args(store, test_cards, *SHORT_RUN, *overrides)
    # `stage1_args` names `test_llama` and the session's cards; this run uses
    # the zero-pad card beside them.
    args = [
        a.replace(
            f"target_llm.name={test_cards.llms.llama_card}",
            f"target_llm.name={ZERO_PAD_CARD}",
        ).replace(
            f"extra_paths=[{test_cards.card_dir}]",
            f"extra_paths=[{test_cards.card_dir}, {zero_pad_llama / 'cards'}]",
        )
        for a in args
    ]
    done = run_recipe("stage1", out, *args, check=False)
    return done.returncode, done.stdout + done.stderr


def test_stage1_recipe_refuses_to_start_on_a_zero_pad_row(
    zero_pad_llama: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    returncode, output = _stage1_run(zero_pad_llama, test_cards, tmp_path / "out")

    assert returncode != 0
    assert "'<|finetune_right_pad_id|>'" in output
    assert "row norm of 0," in output and "median row norm" in output
    assert "target_llm.pad_token" in output
    assert "Traceback" not in output
    assert not list((tmp_path / "out").glob("checkpoints/step_*"))


@pytest.mark.slow
def test_stage1_recipe_trains_on_a_zero_pad_row_when_allowed(
    zero_pad_llama: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    returncode, output = _stage1_run(
        zero_pad_llama,
        test_cards,
        tmp_path / "out",
        "target_llm.allow_weak_pad_row=true",
    )

    assert returncode == 0, output[-4000:]
    assert "likely an untrained (reserved) token" in output
    assert (tmp_path / "out" / "checkpoints" / "step_2").is_dir()
