"""The generate recipe end to end: espeak speech -> hypotheses.jsonl + summary.json.

Runs ``python -m recipes.generate`` as users do, with the session's tiny
SeamlessM4T-v2 encoder, a tiny projector trained "for" ``test_llama`` and
that LLM (random weights: the hypotheses are gibberish, and are checked
against the in-process :class:`SpeechMapperPipeline` on the same audio).
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import sacrebleu
import torch
from whisper_normalizer.english import EnglishTextNormalizer

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.data.instructions import InstructionExample, write_instructions
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.speech_llm import PipelineResult, SpeechMapperPipeline
from speechmapper_plugin.speech_llm.long_form import run_long_form
from tests.support.audio import (
    has_espeak,
    synthesize_corpus,
    tone,
    write_manifest,
    write_wav,
)
from tests.support.cards import SessionCards
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.llm import training_sentences
from tests.support.recipes import (
    REPO,
    read_metrics,
    recipe_command,
    recipe_env,
    run_recipe,
)

pytestmark = pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")

TINY = str(REPO / "recipes/generate/configs/tiny.yaml")

# The generation settings of tiny.yaml.
GENERATION = GenerationConfig(max_new_tokens=32, max_gen_len=(1.0, 16))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five spoken sentences plus four unusable rows; returns the manifest."""
    root = tmp_path_factory.mktemp("generate_corpus")
    sentences = training_sentences(400)[80:85]
    manifest = synthesize_corpus(root, sentences, speed=130)

    write_wav(root / "audio/short.wav", tone(0.4))  # under the 0.655 s minimum
    with manifest.open("a", encoding="utf-8") as fp:
        fp.write("missing\taudio/missing.wav\t16000\tA dog.\ten\n")
        fp.write("short\taudio/short.wav\t6400\tA cat.\ten\n")
        fp.write("malformed\tonly two columns\n")
        fp.write("utt00001\taudio/utt00002.wav\t\tA duplicate id.\ten\n")
    return manifest


def generate_args(cards: SessionCards, *overrides: str) -> list[str]:
    return [
        "--config-file",
        TINY,
        "--config",
        "model.name=test_projector_llama",
        "sfm.name=test_sm4t_hf",
        "llm.name=test_llama",
        f"common.assets.extra_paths=[{cards.card_dir}]",
        *overrides,
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def manifest_rows(manifest: Path) -> list[list[str]]:
    return [line.split("\t") for line in manifest.read_text().splitlines()[1:]]


def test_manifest_to_transcripts_with_references_flags_and_summary(
    corpus: Path,
    test_cards: SessionCards,
    pipeline: SpeechMapperPipeline,
    tmp_path: Path,
) -> None:
    out = tmp_path / "asr"
    done = run_recipe(
        "generate",
        out,
        *generate_args(test_cards, f"input.manifest={corpus}", "prompt.task=asr"),
    )

    records = read_jsonl(out / "hypotheses.jsonl")
    good = manifest_rows(corpus)[:5]
    assert [r["id"] for r in records] == [row[0] for row in good]  # manifest order

    instruction = pipeline.prompts.transcription()
    audio = [corpus.parent / row[1] for row in good]
    expected = pipeline.run(audio, instruction)

    for record, row, result in zip(records, good, expected, strict=True):
        assert record["task"] == "asr"
        assert record["lang"] == "en"
        assert record["audio"] == str(corpus.parent / row[1])
        assert record["instruction"] == instruction
        assert record["reference"] == row[3]
        assert record["hypothesis"] == result.text
        assert record["stop_reason"] == result.stop_reason
        # tiny.yaml's budget by hand: min(32, floor(1.0 * positions + 16)).
        budget = min(32, math.floor(1.0 * result.num_speech_positions + 16))
        assert record["max_length_reached"] == (len(result.token_ids) == budget)
        assert record["num_speech_positions"] == result.num_speech_positions > 0
        assert record["num_generated_tokens"] == len(result.token_ids)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_inputs"] == 9
    assert summary["num_generated"] == 5
    assert summary["num_skipped"] == 4
    assert summary["skipped_by_reason"] == {
        "duplicate_id": 1,
        "malformed_row": 1,
        "missing_file": 1,
        "too_short_audio": 1,
    }
    stops = summary["stop_reasons"]
    assert sum(stops.values()) == 5
    assert {k: v for k, v in stops.items() if v} == Counter(
        r["stop_reason"] for r in records
    )
    # `wer` means what it means in the evaluate recipe's summary: the WER
    # after Whisper's normaliser (`wer_raw`: of the text as written).
    asr = summary["metrics"]["asr"]
    english = EnglishTextNormalizer()
    refs = [r["reference"] for r in records]
    hyps = [r["hypothesis"] for r in records]
    assert asr["num_examples"] == 5
    assert asr["reference_words_raw"] == sum(len(row[3].split()) for row in good)
    assert asr["wer"] == pytest.approx(
        100
        * jiwer.wer(
            [" ".join(english(t).split()) for t in refs],
            [" ".join(english(t).split()) for t in hyps],
        )
    )
    assert asr["wer_raw"] == pytest.approx(100 * jiwer.wer(refs, hyps))

    skipped = (out / "skipped.tsv").read_text().splitlines()
    assert skipped[0] == "line\tid\treason\tdetail"
    assert [line.split("\t")[2] for line in skipped[1:]] == [
        "missing_file",
        "too_short_audio",
        "malformed_row",
        "duplicate_id",
    ]
    assert not (out / "hypotheses.parts").exists()

    log = done.stdout + done.stderr
    assert "Generated 5 of 9 examples; skipped 4" in log
    assert "asr: WER" in log


def test_instruction_file_with_audio_and_feature_store_examples(
    corpus: Path,
    test_cards: SessionCards,
    pipeline: SpeechMapperPipeline,
    tmp_path: Path,
) -> None:
    rows = manifest_rows(corpus)[:3]
    audio = {row[0]: corpus.parent / row[1] for row in rows}

    # A feature store with the speech encoder's real features, averaged 2:1.
    from speechmapper_plugin.models.sm4t_speech_encoder import SpeechFeatureExtractor

    extractor = SpeechFeatureExtractor(pipeline.extractor.model, frame_averaging=2)
    features, lens = extractor([load_audio(audio[row[0]]) for row in rows])
    store = write_feature_store(
        tmp_path / "store",
        [
            Utterance(row[0], features[i, : lens[i]].clone(), row[3])
            for i, row in enumerate(rows)
        ],
    )

    first, second, third = (row[0] for row in rows)
    examples = [
        InstructionExample(
            id="st",
            audio=str(audio[first]),
            instruction="Translate the audio into German.\n<speech>",
            response="Der alte Hund sah einen Vogel.",
            task="st",
            target_lang="de",
        ),
        InstructionExample(
            id="sqa",
            speech=second,
            instruction="<speech>\nBased on the recording, who saw the bird?",
            response="The old dog.",
            task="sqa",
        ),
        InstructionExample(
            id="asr",
            speech=third,
            instruction="Transcribe the audio.\n<speech>",
            response=rows[2][3],
            task="asr",
        ),
        InstructionExample(
            id="lost",
            speech="not_in_the_store",
            instruction="Transcribe the audio.\n<speech>",
        ),
    ]
    instructions = tmp_path / "eval.jsonl"
    write_instructions(instructions, examples)

    out = tmp_path / "instructions"
    run_recipe(
        "generate",
        out,
        *generate_args(
            test_cards,
            f"input.instructions={instructions}",
            f"input.feature_store={store}",
        ),
    )

    records = {r["id"]: r for r in read_jsonl(out / "hypotheses.jsonl")}
    assert list(records) == ["st", "sqa", "asr"]

    for example in examples[:3]:
        record = records[example.id]
        assert record["instruction"] == example.instruction
        assert record["reference"] == example.response
        assert record["task"] == example.task
        source = example.audio if example.audio else example.speech
        assert record["audio" if example.audio else "speech"] == source
        speech = audio[first] if example.audio else audio[str(example.speech)]
        (expected,) = pipeline.run(speech, example.instruction)
        assert record["hypothesis"] == expected.text
        assert record["num_speech_positions"] == expected.num_speech_positions
    assert records["st"]["target_lang"] == "de"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_inputs"] == 4
    assert summary["skipped_by_reason"] == {"missing_features": 1}
    assert summary["tasks"] == {"asr": 1, "sqa": 1, "st": 1}
    assert set(summary["metrics"]) == {"asr", "st/de"}
    st = records["st"]
    assert summary["metrics"]["st/de"]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([st["hypothesis"]], [[st["reference"]]]).score
    )
    skipped = (out / "skipped.tsv").read_text().splitlines()[1].split("\t")
    assert skipped[1:3] == ["lost", "missing_features"]


def test_two_processes_share_the_work(
    corpus: Path,
    test_cards: SessionCards,
    pipeline: SpeechMapperPipeline,
    tmp_path: Path,
) -> None:
    out = tmp_path / "ddp"
    run_recipe(
        "generate",
        out,
        *generate_args(
            test_cards,
            f"input.manifest={corpus}",
            "prompt.task=st",
            "prompt.target_lang=fr",
        ),
        nproc=2,
        timeout=900,
    )

    log0 = (out / "logs/rank_0.log").read_text()
    log1 = (out / "logs/rank_1.log").read_text()
    assert "Running on 2 process(es)" in log0
    # The 5 good rows and the 2 whose audio turns out unusable are dealt out.
    assert "Rank 0: 4 of 7 examples to generate." in log0
    assert "Rank 1: 3 of 7 examples to generate." in log1

    records = read_jsonl(out / "hypotheses.jsonl")
    assert [r["id"] for r in records] == [row[0] for row in manifest_rows(corpus)[:5]]
    assert all(r["task"] == "st" and r["target_lang"] == "fr" for r in records)
    assert all("into French" in r["instruction"] for r in records)
    assert all("reference" not in r for r in records)  # a manifest has no translations

    # Rank 1 ran the same (broadcast) weights as rank 0.
    audio = [corpus.parent / row[1] for row in manifest_rows(corpus)[:5]]
    expected = pipeline.run(audio, pipeline.prompts.translation("fr"))
    assert [r["hypothesis"] for r in records] == [e.text for e in expected]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_generated"] == 5 and summary["num_skipped"] == 4
    assert summary["metrics"] == {}


@pytest.mark.slow
def test_sigusr1_stops_between_batches_and_a_rerun_completes(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """fairseq2's stop signal reaches its Generator task, which stops between
    batches; what was written stays, and a rerun generates the rest."""
    out = tmp_path / "stopped"
    args = generate_args(
        test_cards, f"input.manifest={corpus}", "batching.max_batch_size=1"
    )
    part = out / "hypotheses.parts" / "rank_000.jsonl"
    proc = subprocess.Popen(
        recipe_command("generate", out, *args),
        cwd=REPO,
        env=recipe_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while (
            not (part.exists() and part.read_bytes().count(b"\n") >= 1)
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be stopped"
        proc.send_signal(signal.SIGUSR1)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert "SIGUSR1 received" in output
    assert "Task stopped" in output
    assert not (out / "summary.json").exists()
    done = [json.loads(line)["id"] for line in part.read_text().splitlines()]
    assert 1 <= len(done) < 5

    resumed = run_recipe("generate", out, *args)
    assert "resuming" in resumed.stdout + resumed.stderr
    records = read_jsonl(out / "hypotheses.jsonl")
    assert [r["id"] for r in records] == [row[0] for row in manifest_rows(corpus)[:5]]


@pytest.mark.parametrize(
    ("projector", "expected"),
    [
        (
            "test_projector_eurollm",
            "The projector ('test_projector_eurollm') was trained for the LLM 'test_eurollm' (its `target_llm`), but the LLM is 'test_llama'",
        ),
        (
            "test_projector_base",
            "The projector ('test_projector_base') outputs 32-d embeddings, but 'test_llama' has 64-d token embeddings",
        ),
    ],
)
def test_mismatched_components_fail_before_loading_weights(
    corpus: Path,
    test_cards: SessionCards,
    tmp_path: Path,
    projector: str,
    expected: str,
) -> None:
    done = run_recipe(
        "generate",
        tmp_path / "bad",
        *generate_args(
            test_cards, f"input.manifest={corpus}", f"model.name={projector}"
        ),
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert expected in output
    assert "Traceback" not in output
    assert "Loading" not in output  # no model weights were read


def test_the_suggested_target_llm_override_works(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """The mismatch error says how to vouch that two card names are one model."""
    instructions = tmp_path / "one.jsonl"
    first = manifest_rows(corpus)[0]
    write_instructions(
        instructions,
        [
            InstructionExample(
                id="a",
                audio=str(corpus.parent / first[1]),
                instruction="Transcribe the audio.\n<speech>",
            )
        ],
    )
    out = tmp_path / "out"
    run_recipe(
        "generate",
        out,
        *generate_args(
            test_cards,
            f"input.instructions={instructions}",
            "model.name=test_projector_eurollm",
            "model.config_overrides.target_llm=test_llama",
        ),
    )
    assert [r["id"] for r in read_jsonl(out / "hypotheses.jsonl")] == ["a"]


def test_speech_ids_need_a_feature_store(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    instructions = tmp_path / "eval.jsonl"
    write_instructions(
        instructions,
        [InstructionExample(id="a", speech="u0", instruction="Hi <speech>")],
    )
    done = run_recipe(
        "generate",
        tmp_path / "out",
        *generate_args(test_cards, f"input.instructions={instructions}"),
        check=False,
    )
    assert done.returncode != 0
    assert "set `input.feature_store`" in done.stdout + done.stderr


def test_an_old_generation_option_names_its_fairseq2_name(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    done = run_recipe(
        "generate",
        tmp_path / "old",
        *generate_args(
            test_cards, f"input.manifest={corpus}", "generation.length_penalty=0.8"
        ),
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "`length_penalty` is now fairseq2's `len_penalty`" in output
    assert "Loading" not in output  # refused before any weights are read


@pytest.mark.slow
def test_sampling_through_the_recipe_repeats_with_its_seed(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """fairseq2's Generator seeds the run from `common.seed`: the same seed
    draws the same samples, another seed other ones; its `generation`
    metrics count the examples the unit generated."""
    sampling = (
        f"input.manifest={corpus}",
        "generation.generator=sampling",
        "generation.temperature=1.5",
        "generation.sampler.top_p.p=1.0",
    )

    def hypotheses(name: str, seed: int) -> list[str]:
        out = tmp_path / name
        run_recipe(
            "generate",
            out,
            *generate_args(test_cards, *sampling, f"common.seed={seed}"),
        )
        records = read_jsonl(out / "hypotheses.jsonl")
        (metrics,) = read_metrics(out, "generation")
        # fairseq2's recorder keys num_examples by its display name.
        assert metrics["Number of Examples"] == len(records) == 5
        # The missing and the short file; the malformed row and the duplicate
        # id are set aside while the manifest is read, before the unit.
        assert metrics["num_skipped"] == 2
        return [r["hypothesis"] for r in records]

    first = hypotheses("a", seed=3)
    assert hypotheses("b", seed=3) == first
    assert hypotheses("c", seed=4) != first


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"manifest": "a.tsv", "instructions": "b.jsonl"},
            "Give exactly one of `input.manifest`",
        ),
        ({"manifest": "a.tsv", "task": "st"}, "needs `prompt.target_lang`"),
        ({"manifest": "a.tsv", "task": "custom"}, "needs `prompt.instruction`"),
        (
            {"manifest": "a.tsv", "instruction": "No placeholder."},
            "must contain the placeholder <speech> exactly once",
        ),
        (
            {"instructions": "b.jsonl", "instruction": "Say <speech>"},
            "apply to `input.manifest` only",
        ),
        ({"manifest": "a.tsv", "max_batch_size": 0}, "`batching.max_batch_size`"),
        (
            {"manifest": "a.tsv", "segmenter": "words"},
            "`long_form.segmenter`: `kind` must be 'fixed' or 'vad'",
        ),
        (
            {"manifest": "a.tsv", "long_batch_size": 0},
            "`long_form.batch_size` must be positive",
        ),
    ],
)
def test_the_config_is_validated(overrides: dict[str, Any], message: str) -> None:
    from fairseq2.utils.validation import StandardObjectValidator, ValidationError

    from recipes.generation import BatchingSection, GenerateConfig, InputSection
    from recipes.long_form import LongFormSection
    from speechmapper_plugin.generation_task import InstructionPromptSection

    def pick(*names: str) -> dict[str, Any]:
        return {k: v for k, v in overrides.items() if k in names}

    config = GenerateConfig(
        input=InputSection(
            **{k: Path(v) for k, v in pick("manifest", "instructions").items()}
        ),
        prompt=InstructionPromptSection(**pick("task", "instruction")),
        batching=BatchingSection(**pick("max_batch_size")),
        long_form=LongFormSection(
            enabled=True,
            segmenter=SegmenterConfig(kind=overrides.get("segmenter", "vad")),
            batch_size=overrides.get("long_batch_size"),
        ),
    )

    with pytest.raises(ValidationError, match=re.escape(message)):
        StandardObjectValidator().validate(config)


def test_an_input_is_required_when_the_recipe_runs_not_by_the_config() -> None:
    """Without an input the config validates (``--dump-config`` shows it);
    the recipe refuses to start with the message validation gives for two."""
    from fairseq2.recipe.error import RecipeError
    from fairseq2.utils.validation import StandardObjectValidator, ValidationError

    from recipes.generation import GenerateConfig, InputSection

    StandardObjectValidator().validate(GenerateConfig())

    with pytest.raises(RecipeError) as missing:
        InputSection().require()
    assert str(missing.value).startswith("Give exactly one of `input.manifest`")

    both = InputSection(manifest=Path("a.tsv"), instructions=Path("b.jsonl"))
    with pytest.raises(ValidationError, match=re.escape(str(missing.value))):
        StandardObjectValidator().validate(GenerateConfig(input=both))

    InputSection(manifest=Path("a.tsv")).require()


@pytest.mark.slow
def test_a_stage1_checkpoint_is_the_projector(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """``model.name=last_checkpoint`` + ``common.assets.prev_checkpoint_dir``
    loads a training run's projector; its recorded ``target_llm`` is enforced."""
    sentences = training_sentences(400)[80:84]
    store = write_feature_store(
        tmp_path / "store",
        [
            Utterance(
                f"u{i}",
                torch.randn(90, 64, generator=torch.Generator().manual_seed(i)),
                s,
            )
            for i, s in enumerate(sentences)
        ],
        # Stand-ins for the features generate extracts (the run records them).
        encoder="test_sm4t_hf",
        layer=4,
    )
    stage1 = tmp_path / "stage1"
    run_recipe(
        "stage1",
        stage1,
        "--config-file",
        str(REPO / "recipes/stage1/configs/tiny.yaml"),
        "--config",
        "target_llm.name=test_llama",
        f"dataset.config_overrides.splits={{train: [{store}]}}",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
        "regime.num_steps=4",
        "regime.checkpoint_every_n_steps=4",
        "regime.validate_every_n_steps=4",
        "regime.publish_metrics_every_n_steps=2",
        "regime.validate_at_start=false",
        "lr_scheduler.config.num_warmup_steps=1",
        "dataset.valid_splits=[]",
    )

    def generate(out: Path, llm: str) -> subprocess.CompletedProcess[str]:
        return run_recipe(
            "generate",
            out,
            "--config-file",
            TINY,
            "--config",
            "model.name=last_checkpoint",
            f"common.assets.prev_checkpoint_dir={stage1 / 'checkpoints'}",
            "sfm.name=test_sm4t_hf",
            f"llm.name={llm}",
            f"common.assets.extra_paths=[{test_cards.card_dir}]",
            f"input.manifest={corpus}",
            check=llm == "test_llama",
        )

    generate(tmp_path / "ok", "test_llama")
    assert len(read_jsonl(tmp_path / "ok/hypotheses.jsonl")) == 5

    refused = generate(tmp_path / "refused", "test_eurollm")
    assert refused.returncode != 0
    assert (
        "The projector ('last_checkpoint') was trained for the LLM 'test_llama' (its `target_llm`), but the LLM is 'test_eurollm'"
        in refused.stdout + refused.stderr
    )


@pytest.mark.slow
def test_a_recording_longer_than_the_projector_goes_long_form(
    corpus: Path,
    test_cards: SessionCards,
    pipeline: SpeechMapperPipeline,
    tmp_path: Path,
) -> None:
    """With ``long_form.enabled`` a 45 s recording (the projector takes
    32.8 s) is answered segment by segment, as ``run_long_form`` answers it
    in process; a too-long *segment* row is still a counted skip."""
    good = manifest_rows(corpus)[:5]
    pieces: list[np.ndarray] = []
    for row in good * 2:
        pieces += [load_audio(corpus.parent / row[1]).numpy(), np.zeros(16_000)]
    long_wav = write_wav(tmp_path / "long.wav", np.concatenate(pieces))
    reference = " ".join(row[3] for row in good * 2)
    short = corpus.parent / good[0][1]
    manifest = write_manifest(
        tmp_path / "long.jsonl",
        [
            {"id": "long", "audio": str(long_wav), "text": reference, "lang": "en"},
            {"id": "short", "audio": str(short), "text": good[0][3], "lang": "en"},
            {
                "id": "long_segment",
                "audio": str(long_wav),
                "text": reference,
                "lang": "en",
                "offset": 1.0,
                "duration": 40.0,
            },
        ],
    )
    assert load_audio(long_wav).numel() > 40 * 16_000

    out = tmp_path / "out"
    run_recipe(
        "generate",
        out,
        *generate_args(
            test_cards,
            f"input.manifest={manifest}",
            "prompt.task=asr",
            "long_form.enabled=true",
            "long_form.segmenter.kind=fixed",
            "long_form.segmenter.max_seconds=12.0",
            "long_form.batch_size=2",
        ),
    )

    instruction = pipeline.prompts.transcription()
    expected = run_long_form(
        pipeline,
        long_wav,
        instruction,
        segmenter=SegmenterConfig(kind="fixed", max_seconds=12.0),
        batch_size=2,
    )
    assert len(expected.segments) == 4  # 12 + 12 + 12 + the rest
    records = {r["id"]: r for r in read_jsonl(out / "hypotheses.jsonl")}
    assert set(records) == {"long", "short"}
    long = records["long"]
    assert long["hypothesis"] == expected.text
    assert long["reference"] == reference
    assert [(s["start"], s["end"]) for s in long["segments"]] == [
        (round(s.start, 3), round(s.end, 3)) for s in expected.segments
    ]
    assert [s["text"] for s in long["segments"]] == [s.text for s in expected.segments]
    answered = [s.result for s in expected.segments]
    assert long["num_speech_positions"] == sum(
        r.num_speech_positions for r in answered if isinstance(r, PipelineResult)
    )
    assert records["short"]["hypothesis"] == pipeline.run([short], instruction)[0].text
    assert "segments" not in records["short"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_generated"] == 2
    assert summary["skipped_by_reason"] == {"too_long_for_llm": 1}
    assert summary["long_form"]["segmenter"]["kind"] == "fixed"
    # WER over the whole recording: its reference counts every word once.
    assert summary["metrics"]["asr"]["reference_words_raw"] == len(
        reference.split()
    ) + len(good[0][3].split())
