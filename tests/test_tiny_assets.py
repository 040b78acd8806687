"""The package's tiny-asset builders: real formats, loadable through fairseq2 cards.

The session's ``test_llama`` and ``test_sm4t_hf`` cards are built with these
functions too (see ``tests/support``); here they are checked directly, with the
options the quickstart uses and on bad input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from fairseq2.assets import AssetCard
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout

from speechmapper_plugin.data.manifest_validation import validate_manifest
from speechmapper_plugin.llm import load_target_llm_embeddings
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    get_sm4t_speech_encoder_hub,
)
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from speechmapper_plugin.tiny_assets import (
    INSTRUCTION_SENTENCES,
    LLAMA3_SPECIAL_TOKENS,
    SM4T_TINY_DIMS,
    TINY_LLAMA_DIMS,
    SpeechSynthesisError,
    TinyLlamaDims,
    embedding_rows,
    fairseq2_llama_config,
    has_speech_synthesis,
    synthesize_corpus,
    synthesize_speech,
    templated_sentences,
    training_sentences,
    write_card_file,
    write_tiny_llama3,
    write_tiny_sm4t,
)


def card_of(fields: dict[str, object]) -> AssetCard:
    return AssetCard(str(fields["name"]), fields)


def test_tiny_dims_are_the_registered_tiny_archs() -> None:
    sm4t = get_sm4t_speech_encoder_hub().get_arch_config("tiny")
    for name, value in SM4T_TINY_DIMS.items():
        assert getattr(sm4t, name) == value, name

    # The tiny LLM speaks the tiny projector's output width.
    projector = get_speechmapper_model_hub().get_arch_config("tiny")
    assert projector.output_dim == TINY_LLAMA_DIMS.model_dim
    assert projector.input_dim == sm4t.model_dim


def test_sentences_are_deterministic_and_instructions_come_first() -> None:
    corpus = training_sentences(120, seed=3)
    num_instructions = 10 * len(INSTRUCTION_SENTENCES)

    assert len(corpus) == 120
    assert corpus[:num_instructions] == list(INSTRUCTION_SENTENCES) * 10
    assert corpus[num_instructions:] == templated_sentences(40, seed=3)
    assert templated_sentences(40, seed=3) != templated_sentences(40, seed=4)
    assert all(s.endswith(".") and s[0].isupper() for s in templated_sentences(50))


def test_llama3_llm_loads_through_its_card_and_matches_transformers(
    tmp_path: Path,
) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    sentences = templated_sentences(200, seed=5)
    llm = write_tiny_llama3(
        tmp_path / "llm",
        card_name="tiny_assets_llama",
        sentences=sentences,
        seed=3,
        tokenizer_vocab_size=640,
    )
    card = card_of(llm.card)

    # The real release's files.
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (llm.directory / name).is_file(), name

    model = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(model, TransformerLM)
    reference = LlamaForCausalLM.from_pretrained(llm.directory).eval()
    ids = torch.randint(
        0, llm.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(ids, BatchLayout.of(ids)),
            reference(ids).logits,
            atol=1e-5,
            rtol=1e-5,
        )

    # The tokenizer: trained on the sentences (about a token per word), the real
    # special tokens after the regular ones, the chat template in its config.
    tokenizer = load_tokenizer(card)
    hf = AutoTokenizer.from_pretrained(llm.directory)
    encoder = tokenizer.create_raw_encoder()
    for sentence in sentences[:20]:
        ids_ = encoder(sentence).tolist()
        assert ids_ == hf.encode(sentence, add_special_tokens=False)
        assert len(ids_) <= len(sentence.split()) + 1
    specials = hf.convert_tokens_to_ids(list(LLAMA3_SPECIAL_TOKENS))
    assert specials == sorted(specials) and min(specials) == tokenizer.vocab_info.size
    assert llm.vocab_size % 32 == 0 and llm.vocab_size >= len(hf)
    assert "<|start_header_id|>" in hf.apply_chat_template(
        [{"role": "user", "content": "Transcribe the audio."}], tokenize=False
    )

    # The plugin's own card fields: stage 1 pads with Llama 3.1's pad token.
    target = load_target_llm_embeddings(card)
    assert target.pad_token == "<|finetune_right_pad_id|>"
    assert target.embed_dim == TINY_LLAMA_DIMS.model_dim


def test_sm4t_checkpoint_is_sharded_and_loads_through_its_card(tmp_path: Path) -> None:
    fields = write_tiny_sm4t(tmp_path / "sm4t", card_name="tiny_assets_sm4t", seed=4)

    shards = sorted((tmp_path / "sm4t").glob("*.safetensors"))
    assert len(shards) > 1
    assert (tmp_path / "sm4t" / "model.safetensors.index.json").is_file()

    encoder = load_model(card_of(fields), device=torch.device("cpu"))
    assert isinstance(encoder, SM4TSpeechEncoder)

    # Seeded: the same seed gives the same weights, another seed others.
    again = write_tiny_sm4t(tmp_path / "again", card_name="again", seed=4)
    other = write_tiny_sm4t(tmp_path / "other", card_name="other", seed=5)
    weights = encoder.state_dict()
    same = load_model(card_of(again)).state_dict()
    different = load_model(card_of(other)).state_dict()
    assert all(torch.equal(same[k], v) for k, v in weights.items())
    assert not any(torch.equal(different[k], v) for k, v in weights.items())


def test_card_file_is_multi_document_yaml(tmp_path: Path) -> None:
    path = write_card_file(
        tmp_path / "cards" / "x.yaml", [{"name": "a"}, {"name": "b"}]
    )
    assert [c["name"] for c in yaml.safe_load_all(path.read_text())] == ["a", "b"]


def test_oversized_tokenizer_and_unreproducible_ffn_are_clear_errors() -> None:
    assert embedding_rows(651) == 672
    with pytest.raises(
        ValueError, match="at most 1024 embedding rows.*smaller `vocab_size`"
    ):
        embedding_rows(1025)

    with pytest.raises(ValueError, match="multiple of 64"):
        fairseq2_llama_config(64, 10_000.0, TinyLlamaDims(intermediate_size=100))

    with pytest.raises(ValueError, match="at least one training sentence"):
        write_tiny_llama3(Path("/nonexistent"), card_name="x", sentences=[])


@pytest.mark.skipif(not has_speech_synthesis(), reason="needs espeak-ng and sox")
def test_synthesised_corpus_passes_manifest_validation(tmp_path: Path) -> None:
    sentences = templated_sentences(3, seed=1)
    manifest = synthesize_corpus(tmp_path, sentences, id_prefix="dev_")

    report = validate_manifest(manifest)
    assert report.ok, report.summary_lines()
    assert report.num_rows == 3
    assert report.sample_rates == {16_000: 3}

    rows = [line.split("\t") for line in manifest.read_text().splitlines()]
    assert rows[0] == ["id", "audio", "num_samples", "text", "lang"]
    assert [r[0] for r in rows[1:]] == ["dev_00000", "dev_00001", "dev_00002"]
    assert [r[3] for r in rows[1:]] == sentences
    # Slow speech (about 110 words a minute, plus pauses).
    for row in rows[1:]:
        seconds_per_word = int(row[2]) / 16_000 / len(row[3].split())
        assert 0.4 < seconds_per_word < 0.9, row


@pytest.mark.skipif(not has_speech_synthesis(), reason="needs espeak-ng and sox")
def test_bad_synthesis_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpeechSynthesisError, match="empty text"):
        synthesize_speech(tmp_path / "x.wav", "   ")
    with pytest.raises(ValueError, match="tab or a newline"):
        synthesize_corpus(tmp_path, ["fine.", "not\tfine."])


def test_missing_synthesisers_are_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not has_speech_synthesis()
    with pytest.raises(SpeechSynthesisError, match="install_system_packages.sh"):
        synthesize_speech(tmp_path / "x.wav", "hello")
