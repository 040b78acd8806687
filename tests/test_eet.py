"""The Embedding Error Threshold on a tiny LLM: noise of the requested size, a
change-rate curve monotone within sampling error, counts and WER equal to
direct comparisons, clean outputs equal to plain text prompting, the
interpolated crossing (hand-worked) and its bootstrap interval, thresholds
that agree across noise seeds and sentence samples, skips, and the recipe's
files."""

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
    THRESHOLD_ABOVE_GRID,
    THRESHOLD_BELOW_GRID,
    THRESHOLD_MEASURED,
    EETConfig,
    EETLevel,
    EETResult,
    interpolate_crossing,
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
from speechmapper_plugin.llm.tokens import create_text_decoder, max_token_id
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
        num_draws=1,
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
    threshold = result.threshold_level
    assert threshold is not None and threshold.change_rate > 0.05
    assert result.safe_mse <= result.threshold_mse <= threshold.mse
    earlier = result.levels[1 : result.levels.index(threshold)]
    assert all(level.change_rate <= 0.05 for level in earlier)


def test_counts_and_wer_equal_direct_comparisons(result: EETResult) -> None:
    clean = result.clean_outputs
    assert result.levels[0].outputs == tuple(clean)

    for level in result.levels[1:]:
        assert len(level.outputs) == len(clean)
        changed = [o != c for o, c in zip(level.outputs, clean, strict=True)]
        assert level.num_changed == sum(changed)
        assert level.changed_per_sentence == tuple(int(c) for c in changed)

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
        table = model.decoder_frontend.state_dict()["embed.weight"]
        embeds = table[torch.tensor(list(ids))]
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


def test_the_scale_is_the_embeddings_mean_square(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate], result: EETResult
) -> None:
    """Independent reference: the Llama frontend is the bare embedding table,
    so every mean square is read off its weight rows directly."""
    model, tokenizer, _ = llm
    table = model.decoder_frontend.state_dict()["embed.weight"]
    encode = tokenizer.create_raw_encoder()
    ids = torch.cat([encode(s) for s in result.sentences])
    assert result.embedding_mean_square == pytest.approx(
        float(table[ids].pow(2).mean()), rel=1e-5
    )
    num_rows = max_token_id(tokenizer) + 1
    assert result.table_mean_square == pytest.approx(
        float(table[:num_rows].pow(2).mean()), rel=1e-5
    )
    pad_idx = tokenizer.vocab_info.pad_idx
    assert pad_idx is not None
    assert result.pad_mean_square == pytest.approx(
        float(table[pad_idx].pow(2).mean()), rel=1e-5
    )


def test_the_crossing_is_interpolated_log_linearly() -> None:
    """Hand-worked: between 1e-3 (2 % changed) and 1e-2 (12 %), 5 % is 3/10 of
    the way, so the crossing is 10^(-3 + 0.3)."""
    mses = [1e-4, 1e-3, 1e-2]
    cases = [
        ([0.0, 0.02, 0.12], 10**-2.7),
        ([0.0, 0.0, 0.5], 10**-2.9),  # 0.05 / 0.5 of the way from 1e-3
        ([0.0, 0.05, 0.5], 1e-3),  # exactly 5 % is not over it: crossed at 1e-3
        ([0.0, 0.1, 0.0], 10**-3.5),  # the first crossing counts
        ([0.1, 0.2, 0.3], 1e-4),  # over at once: the grid's first MSE
        ([0.0, 0.01, 0.05], 1e-2),  # never over: the grid's last MSE
    ]
    for rates, expected in cases:
        got = interpolate_crossing(mses, rates, 0.05)
        assert float(got) == pytest.approx(expected, rel=1e-12), rates

    batch = interpolate_crossing(mses, [[r for r in c[0]] for c in cases], 0.05)
    assert batch.shape == (len(cases),)
    assert batch == pytest.approx([c[1] for c in cases], rel=1e-12)

    with pytest.raises(ValueError, match="must end in the number of MSEs"):
        interpolate_crossing(mses, [0.0, 0.1], 0.05)


def _hand_result(
    mses: list[float], changed: list[tuple[int, ...]], num_draws: int
) -> EETResult:
    """An EET result from per-sentence change counts per level."""
    num_sentences = len(changed[0])
    levels = [
        EETLevel(
            variance=mse,
            mse=mse,
            relative_mse=mse,
            num_outputs=num_sentences * num_draws,
            num_changed=sum(counts),
            word_errors=0,
            num_clean_words=0,
            changed_per_sentence=counts,
        )
        for mse, counts in zip(
            [0.0, *mses], [(0,) * num_sentences, *changed], strict=True
        )
    ]
    return EETResult(
        llm="hand",
        instruction=INSTRUCTION,
        system_prompt=None,
        change_threshold=0.05,
        num_draws=num_draws,
        seed=0,
        dtype="float32",
        embed_dim=1,
        embedding_mean_square=1.0,
        sentences=[str(i) for i in range(num_sentences)],
        clean_outputs=[""] * num_sentences,
        skipped=[],
        levels=levels,
    )


def test_the_interval_bootstraps_sentences() -> None:
    """Hand-worked: 4 sentences x 5 draws; at 1e-5 sentences 0 and 3 change
    once each (2/20 = 10 %), at 1e-4 every output changes. The crossing is
    halfway between 1e-6 and 1e-5 in log MSE. A resample holding k copies of
    sentences 0 and 3 changes k/20 at 1e-5 (k ~ Binomial(4, 1/2)): k = 4
    (6.25 % of resamples) crosses at 10^-5.75, k <= 1 (31 %) only between 1e-5
    and 1e-4, 5 % of the way at k = 0 (6.25 %): 10^-4.95. Both tails hold more
    than 2.5 %, so those are the 95 % interval's ends."""
    mses = [1e-6, 1e-5, 1e-4]
    result = _hand_result(mses, [(0, 0, 0, 0), (1, 0, 0, 1), (5, 5, 5, 5)], 5)

    assert result.threshold_status == THRESHOLD_MEASURED
    assert result.threshold_mse == pytest.approx(10**-5.5)
    estimate = result.threshold_estimate
    assert estimate is not None
    assert estimate.value == pytest.approx(10**-5.5)
    assert estimate.low == pytest.approx(10**-5.75)
    assert estimate.high == pytest.approx(10**-4.95)
    assert estimate.n == 4

    # Control: sentences that all behave alike leave nothing to resample.
    alike = _hand_result(mses, [(0, 0, 0, 0), (1, 1, 1, 1), (5, 5, 5, 5)], 5)
    same = alike.threshold_estimate
    assert same is not None
    assert same.low == same.value == same.high == pytest.approx(1e-6 * 10**0.25)

    below = _hand_result(mses, [(1, 1, 1, 1), (2, 2, 2, 2), (5, 5, 5, 5)], 5)
    assert below.threshold_status == THRESHOLD_BELOW_GRID
    above = _hand_result(mses, [(0, 0, 0, 0), (0, 0, 0, 0), (1, 0, 0, 0)], 5)
    assert above.threshold_status == THRESHOLD_ABOVE_GRID
    for unbracketed in (below, above):
        assert unbracketed.threshold_mse is None
        assert unbracketed.threshold_estimate is None


STABILITY_VARIANCES = [3e-7, 1e-6, 3e-6, 1e-5]
"""Around the tiny LLM's 5 % crossing (1e-6 to 3e-6 with 8 new tokens)."""


def _old_rule(result: EETResult, chunk: range) -> float:
    """The former EET: the first level's MSE at which more than 5 % of one
    draw's outputs on ``chunk``'s sentences changed."""
    for level in result.levels[1:]:
        changed = sum(level.outputs[i] != result.clean_outputs[i] for i in chunk)
        if changed / len(chunk) > result.change_threshold:
            return level.mse
    raise AssertionError("no level over the threshold")


@pytest.mark.slow
def test_thresholds_agree_across_noise_seeds_and_sentence_samples(
    llm: tuple[TransformerLM, Tokenizer, ChatTemplate],
) -> None:
    """The issue's criterion on one LLM: two measurements that share neither
    noise seed nor sentences (200 each, 4 draws) agree within 2x and each lies
    in the other's interval (measured: 1.44e-6 [0.61e-6, 3.0e-6] and 1.73e-6
    [0.61e-6, 4.1e-6]). Control: the old rule (first level over 5 %, one
    draw, 64 sentences) on the same outputs spans 3e-7 to 1e-5. ~25 s."""
    config = _config(
        variances=STABILITY_VARIANCES,
        num_draws=4,
        batch_size=100,
        generation=GenerationConfig(max_new_tokens=8),
    )
    results = [
        run_eet(*llm, templated_sentences(200, seed=sample), replace(config, seed=seed))
        for sample, seed in ((11, 2), (12, 3))
    ]
    a, b = estimates = [r.threshold_estimate for r in results]
    assert a is not None and b is not None
    assert max(a.value, b.value) / min(a.value, b.value) < 2.0, estimates
    assert a.low <= b.value <= a.high, estimates
    assert b.low <= a.value <= b.high, estimates

    old = [
        _old_rule(r, range(start, start + 64))
        for r in results
        for start in (0, 64, 128)
    ]
    assert max(old) / min(old) > 2.0, old


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
    estimate = result.threshold_estimate
    assert estimate is not None
    assert data["threshold_low"] == estimate.low <= estimate.value
    assert data["threshold_high"] == estimate.high >= estimate.value
    assert data["threshold_status"] == THRESHOLD_MEASURED
    assert data["table_mean_square"] == result.table_mean_square > 0
    assert data["marker_mse"] == 2e-6
    assert [lv["variance"] for lv in data["levels"]] == [0.0, *VARIANCES]
    assert data["levels"][3]["num_changed"] == result.levels[3].num_changed

    table = paths["table"].read_text()
    rows = [line for line in table.splitlines() if line[:3].strip("| ").isdigit()]
    assert len(rows) == len(VARIANCES) + 1
    assert "**<- first over**" in table
    assert (
        f"**{result.threshold_mse:.3e}**, 95% interval [{estimate.low:.3e}, {estimate.high:.3e}]"
        in table
    )
    assert f"mean square of {result.embedding_mean_square:.3e}" in table

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
        "eet.num_draws=1",
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
