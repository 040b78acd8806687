"""The Embedding Error Threshold on a tiny LLM: noise of the requested size, a
change-rate curve monotone within sampling error, counts and WER equal to
direct comparisons, clean outputs equal to plain text prompting, skips, and
the recipe's files."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import jiwer
import pytest
import torch
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.utils.validation import ValidationError

from speechmapper_plugin.evaluation.eet import (
    EMPTY_SENTENCE,
    PROMPT_TOO_LONG,
    EETConfig,
    EETResult,
    run_eet,
    run_eet_from_card,
)
from speechmapper_plugin.evaluation.eet_inputs import read_eet_sentences
from speechmapper_plugin.evaluation.eet_report import write_eet
from speechmapper_plugin.generation import GenerationConfig, token_budgets
from speechmapper_plugin.llm import (
    LLAMA3_TEMPLATE,
    ChatTemplate,
    chat_template_for_card,
    stop_token_ids,
)
from speechmapper_plugin.llm.tokens import create_text_decoder
from speechmapper_plugin.metrics.wer import normalize_text
from speechmapper_plugin.tiny_assets.sentences import templated_sentences
from tests.support.audio import write_manifest
from tests.support.cards import SessionCards
from tests.support.generation import reference_greedy
from tests.support.recipes import run_recipe

INSTRUCTION = "Repeat what was said.\n<speech>"

# The tiny random LLM is far more sensitive than a trained one (its outputs
# are near-uniform draws), so its curve lives at much smaller variances.
VARIANCES = [1e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2]

NUM_SENTENCES = 40


def _config(**changes: object) -> EETConfig:
    config = EETConfig(
        variances=list(VARIANCES),
        instruction=INSTRUCTION,
        batch_size=16,
        generation=GenerationConfig(max_new_tokens=16),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def llm(test_cards: SessionCards) -> tuple[TransformerLM, Tokenizer, ChatTemplate]:
    card = test_cards.llms.llama_card
    model = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(model, TransformerLM)
    return model.eval(), load_tokenizer(card), chat_template_for_card(card)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return templated_sentences(NUM_SENTENCES, seed=5)


@pytest.fixture(scope="module")
def result(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate], sentences: list[str]
) -> EETResult:
    return run_eet(*llm, sentences, _config(), llm_name="test_llama")


def test_the_added_mse_is_the_requested_variance(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate], result: EETResult
) -> None:
    """The measured MSE of N Gaussian elements has a relative standard
    deviation of sqrt(2/N); allow five of them."""
    levels = result.levels[1:]
    assert [level.variance for level in levels] == VARIANCES
    assert result.levels[0].mse == 0.0

    encode = llm[1].create_raw_encoder()
    num_tokens = sum(len(encode(s)) for s in result.sentences)
    tolerance = 5 * math.sqrt(2 / (num_tokens * result.embed_dim))
    for level in levels:
        assert abs(level.mse / level.variance - 1) < tolerance, level
        assert level.relative_mse == pytest.approx(
            level.mse / result.embedding_mean_square
        )


def test_the_change_rate_is_monotone_within_sampling_error(result: EETResult) -> None:
    """Tolerance: a level's change rate may fall below an earlier level's by at
    most two standard errors of the difference of two binomial proportions,
    sqrt(se_a^2 + se_b^2) (0 when both rates are 0 or 1). The noise is shared
    between levels (scaled draws), so real drops are rarer than that."""
    levels = result.levels[1:]
    for i, low in enumerate(levels):
        for high in levels[i + 1 :]:
            slack = 2 * math.hypot(low.change_rate_stderr, high.change_rate_stderr)
            assert high.change_rate >= low.change_rate - slack, (low, high)

    # The grid spans the curve: from (almost) nothing changed to everything.
    assert levels[0].change_rate <= result.change_threshold
    assert levels[-1].change_rate >= 0.95
    assert result.threshold_mse is not None
    assert result.safe_mse is not None
    assert result.safe_mse < result.threshold_mse
    threshold = result.threshold_level
    assert threshold is not None and threshold.change_rate > 0.05
    earlier = result.levels[1 : result.levels.index(threshold)]
    assert all(level.change_rate <= 0.05 for level in earlier)


def test_counts_and_wer_equal_direct_comparisons(result: EETResult) -> None:
    clean = result.clean_outputs
    assert result.levels[0].outputs == tuple(clean)

    for level in result.levels[1:]:
        assert len(level.outputs) == len(clean)
        assert level.num_changed == sum(
            o != c for o, c in zip(level.outputs, clean, strict=True)
        )

        refs = [normalize_text(c) for c in clean]
        hyps = [normalize_text(o) for o in level.outputs]
        pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        errors = out.substitutions + out.deletions + out.insertions
        errors += sum(len(h.split()) for r, h in zip(refs, hyps, strict=True) if not r)
        words = sum(len(r.split()) for r, _ in pairs)
        assert level.word_errors == errors
        assert level.wer_vs_clean == pytest.approx(errors / words)


def test_clean_outputs_equal_plain_text_prompting(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate], result: EETResult
) -> None:
    """Independent reference: the tokenizer's own chat formatting of the
    instruction with the sentence in place of <speech> (Llama 3 starts a new
    pre-token after a newline, so the ids are the same), decoded greedily by
    full forward passes."""
    model, tokenizer, _ = llm
    chat = tokenizer.create_raw_encoder().apply_chat_template  # type: ignore[attr-defined]
    decode = create_text_decoder(tokenizer)
    stop_ids = stop_token_ids(tokenizer, LLAMA3_TEMPLATE)
    config = _config().generation

    for sentence, clean in list(
        zip(result.sentences, result.clean_outputs, strict=True)
    )[:4]:
        ids = chat(
            [{"role": "user", "content": INSTRUCTION.replace("<speech>", sentence)}],
            add_generation_prompt=True,
            tokenize=True,
        )
        num_tokens = len(tokenizer.create_raw_encoder()(sentence))
        budget = token_budgets(config, [len(ids)], [num_tokens], model.max_seq_len)[0]
        with torch.inference_mode():
            embeds = model.decoder_frontend.embed(torch.tensor(list(ids)))
        tokens, _, _ = reference_greedy(
            model, embeds, stop_token_ids=stop_ids, max_new_tokens=budget
        )
        assert clean == (decode(torch.tensor(tokens)).strip() if tokens else "")


def test_seeded_and_deterministic(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate],
    sentences: list[str],
    result: EETResult,
) -> None:
    config = _config(variances=VARIANCES[3:5])
    again = run_eet(*llm, sentences, config)
    assert again.levels[1:] == result.levels[4:6]

    other_seed = run_eet(*llm, sentences, replace(config, seed=3))
    assert other_seed.levels[1].mse != again.levels[1].mse

    two_draws = run_eet(*llm, sentences, replace(config, num_draws=2))
    assert two_draws.levels[1].num_outputs == 2 * len(sentences)
    assert two_draws.levels[1].outputs[: len(sentences)] == again.levels[1].outputs


def test_bad_sentences_are_counted_skips(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate],
) -> None:
    sentences = ["", "   ", "dog " * 400, "The old dog saw a bird."]
    got = run_eet(*llm, sentences, _config(variances=[1e-3]))

    assert got.sentences == ["The old dog saw a bird."]
    assert [(s.index, s.reason) for s in got.skipped] == [
        (0, EMPTY_SENTENCE),
        (1, EMPTY_SENTENCE),
        (2, PROMPT_TOO_LONG),
    ]

    with pytest.raises(ValueError, match="None of the 2 sentences is usable"):
        run_eet(*llm, ["", " "], _config())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variances": []}, "at least one"),
        ({"variances": [1e-3, 1e-4]}, "strictly increasing"),
        ({"variances": [0.0, 1e-4]}, "positive and finite"),
        ({"instruction": "Repeat."}, "<speech>"),
        ({"change_threshold": 1.0}, "change_threshold"),
        ({"num_draws": 0}, "num_draws"),
        ({"generation": GenerationConfig(beam_size=2)}, "greedy"),
        ({"generation": GenerationConfig(generator="sampling")}, "greedy"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(**changes).check()


def test_writes_json_table_and_plot(result: EETResult, tmp_path: Path) -> None:
    paths = write_eet(result, tmp_path, marker_mse=2e-6)

    data = json.loads(paths["json"].read_text())
    assert data["threshold_mse"] == result.threshold_mse
    assert data["marker_mse"] == 2e-6
    assert [lv["variance"] for lv in data["levels"]] == [0.0, *VARIANCES]
    assert data["levels"][3]["num_changed"] == result.levels[3].num_changed

    table = paths["table"].read_text()
    rows = [line for line in table.splitlines() if line[:3].strip("| ").isdigit()]
    assert len(rows) == len(VARIANCES) + 1
    assert "**<- EET**" in table
    assert f"{result.threshold_mse:.3e}" in table

    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["plot"].stat().st_size > 10_000


def test_reads_text_files_and_manifest_transcripts(tmp_path: Path) -> None:
    text = tmp_path / "s.txt"
    text.write_text("The dog.\n\nA bird saw the cat.\n")
    assert read_eet_sentences(text_file=text) == ["The dog.", "", "A bird saw the cat."]
    assert read_eet_sentences(text_file=text, max_sentences=1) == ["The dog."]

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    manifest = write_manifest(
        tmp_path / "m.tsv",
        [
            {"id": "u1", "audio": str(audio), "transcript": "The old dog."},
            {"id": "u2", "audio": str(audio), "transcript": "A red bird."},
        ],
    )
    assert read_eet_sentences(manifest=manifest) == ["The old dog.", "A red bird."]

    with pytest.raises(ValueError, match="exactly one"):
        read_eet_sentences()
    with pytest.raises(ValueError, match="no sentence"):
        empty = tmp_path / "empty.txt"
        empty.write_text("\n \n")
        read_eet_sentences(text_file=empty)
    with pytest.raises(ValueError, match="Cannot read"):
        read_eet_sentences(text_file=tmp_path / "absent.txt")


def test_from_card(test_cards: SessionCards, sentences: list[str]) -> None:
    got = run_eet_from_card(
        test_cards.llms.llama_card,
        sentences[:5],
        _config(variances=[1e-3]),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    assert got.llm == test_cards.llms.llama_card
    assert got.levels[1].num_outputs == 5


@pytest.mark.slow
def test_recipe_writes_the_table_and_the_plot(
    test_cards: SessionCards, sentences: list[str], result: EETResult, tmp_path: Path
) -> None:
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(sentences) + "\n")
    out = tmp_path / "eet"

    done = run_recipe(
        "eet",
        out,
        "--config-file",
        "recipes/eet/configs/tiny.yaml",
        "--config",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
        f"llm.name={test_cards.llms.llama_card}",
        f"input.text_file={text}",
        f"eet.instruction={json.dumps(INSTRUCTION)}",
        "eet.batch_size=16",
        "eet.generation.max_new_tokens=16",
        "marker_mse=2e-6",
    )

    data = json.loads((out / "eet.json").read_text())
    # The recipe measures exactly what the Python API does.
    assert data["threshold_mse"] == result.threshold_mse
    assert [lv["outputs"] for lv in data["levels"]] == [
        list(level.outputs) for level in result.levels
    ]
    assert (out / "eet.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "eet.md").read_text()
    assert table.splitlines()[0] in done.stdout


def test_recipe_refuses_a_missing_text_set(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    done = run_recipe(
        "eet",
        tmp_path / "eet",
        "--config-file",
        "recipes/eet/configs/tiny.yaml",
        "--config",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
        f"llm.name={test_cards.llms.llama_card}",
        check=False,
    )
    assert done.returncode != 0
    assert "exactly one of `input.text_file`" in done.stdout + done.stderr
