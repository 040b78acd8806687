"""The dress rehearsal's checkpoint writers, at tiny shapes.

``make rehearsal`` writes the same layouts at full size; here each file is read
back through the plugin's own loaders (the code a user's first run goes
through) and compared with the module that was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from fairseq2.nn import BatchLayout

from benchmarks.rehearsal import main as rehearsal_main
from benchmarks.rehearsal_assets import (
    build_sm4t_speech_encoder,
    speech_encoder_state_dict,
    write_llama3_llm,
    write_sm4t_fairseq1,
    write_sm4t_hf,
)
from speechmapper_plugin.models.sm4t_speech_encoder.hub import (
    get_sm4t_speech_encoder_hub,
)
from speechmapper_plugin.tiny_assets import SM4T_TINY_DIMS
from speechmapper_plugin.tiny_assets.llama import TinyLlamaDims
from speechmapper_plugin.tiny_assets.sentences import training_sentences

TINY_HF = {
    "hidden_size": SM4T_TINY_DIMS["model_dim"],
    "speech_encoder_layers": SM4T_TINY_DIMS["num_encoder_layers"],
    "speech_encoder_attention_heads": SM4T_TINY_DIMS["num_encoder_attn_heads"],
    "speech_encoder_intermediate_size": SM4T_TINY_DIMS["ffn_inner_dim"],
}


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    return build_sm4t_speech_encoder(TINY_HF)


def _hf_output(encoder: torch.nn.Module, fbanks: torch.Tensor) -> torch.Tensor:
    """transformers' last Conformer layer after the final LayerNorm."""
    with torch.inference_mode():
        hidden = encoder.feature_projection(fbanks)  # type: ignore[operator]
        out = encoder.encoder(hidden)  # type: ignore[operator]
    return out.last_hidden_state


@pytest.mark.parametrize("layout", ["hf", "fairseq1"])
def test_sm4t_layouts_load_as_the_written_encoder(
    tmp_path: Path, encoder: torch.nn.Module, layout: str
) -> None:
    state = speech_encoder_state_dict(encoder)
    if layout == "hf":
        # Small shards: the index must list several, plus the other parts'.
        path = write_sm4t_hf(tmp_path / "hf", state, shard_bytes=200_000)
        index = json.loads((path / "model.safetensors.index.json").read_text())
        files = set(index["weight_map"].values())
        assert len(files) > 2
        assert "text_decoder.layer_norm.weight" in index["weight_map"]
    else:
        path = write_sm4t_fairseq1(tmp_path / "sm4t.pt", state)

    hub = get_sm4t_speech_encoder_hub()
    config = hub.get_arch_config("tiny")
    model = hub.load_custom_model(
        path, config, device=torch.device("cpu"), restrict=False
    ).eval()

    # 80 fbank channels; stacked two by two (160) is transformers' input.
    fbanks = torch.randn(1, 80, 80, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, _ = model(fbanks, BatchLayout.of(fbanks), layer=config.num_encoder_layers)
    expected = _hf_output(encoder, fbanks.reshape(1, 40, 160))
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_llm_writer_untied_shards_and_real_special_tokens(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    dims = TinyLlamaDims(model_dim=64, num_layers=2, intermediate_size=192)
    llm = write_llama3_llm(
        tmp_path,
        card_name="rehearsal_tiny",
        sentences=training_sentences(),
        dims=dims,
        vocab_rows=1024,
        max_shard_size="200KB",
    )
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert "lm_head.weight" in index["weight_map"]

    model = LlamaForCausalLM.from_pretrained(tmp_path, torch_dtype="auto")
    assert model.config.tie_word_embeddings is False
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    assert model.lm_head.weight.shape == (1024, 64)
    assert model.dtype == torch.bfloat16
    assert llm.card["model_config"]["vocab_size"] == 1024  # type: ignore[index]

    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    pad = tokenizer.convert_tokens_to_ids("<|finetune_right_pad_id|>")
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert pad != tokenizer.unk_token_id and eot < 1024


def test_unknown_step_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        rehearsal_main(["--steps", "stage3"])
    assert "unknown steps ['stage3']" in capsys.readouterr().err


def test_extraction_speed_below_real_time_is_not_zero() -> None:
    # The full-size encoder on a CPU ran at 0.36x real time; the log said "0x".
    from speechmapper_plugin.extraction import format_speed

    assert format_speed(0.36) == "0.36x"
    assert format_speed(0.004) == "0.004x"
    assert format_speed(2.5) == "2.5x"
    assert format_speed(123.4) == "123x"


def test_force_starts_a_recipe_step_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe started on a folder with checkpoints resumes from them: the
    forced stage-1 step must find none (it resumed on the old code)."""
    import benchmarks.rehearsal as rehearsal

    out = tmp_path / "reh"
    (out / "stage1" / "checkpoints" / "step_3").mkdir(parents=True)
    (out / "stage2" / "checkpoints" / "step_2").mkdir(parents=True)
    finished = {"step": "stage1", "ok": True, "wall_s": 1.0, "figures": {"steps": 3}}
    (out / "steps").mkdir()
    (out / "steps" / "stage1.json").write_text(json.dumps(finished))
    seen = []

    def fake_run_step(s: Any, step: str) -> dict[str, Any]:
        seen.append((step, (s.out / step).exists()))
        row = {"step": step, "ok": True, "wall_s": 2.0, "peak_rss_mib": 1}
        row["figures"] = {"steps": 3}
        s.step_file(step).write_text(json.dumps(row))
        return row

    monkeypatch.setattr(rehearsal, "run_step", fake_run_step)
    args = ["--out", str(out), "--results", str(tmp_path / "r" / "rehearsal")]
    # Without --force the finished step is skipped and its folder kept.
    assert rehearsal.main([*args, "--steps", "stage1"]) == 0
    assert seen == [] and (out / "stage1" / "checkpoints" / "step_3").is_dir()

    assert rehearsal.main([*args, "--steps", "stage1", "--force"]) == 0
    assert seen == [("stage1", False)]
    # Only the forced step's outputs go.
    assert (out / "stage2" / "checkpoints" / "step_2").is_dir()


def test_llama3_tiktoken_file_decodes_every_row(tmp_path: Path) -> None:
    """The stand-in for Meta's ``tokenizer.model``: 128,000 ``base64 rank``
    lines; fairseq2's ``llama`` family (tiktoken) adds the 256 special tokens
    at their released ids, and any id of the 128,256-row table decodes."""
    from fairseq2.assets import AssetCard
    from fairseq2.data.tokenizers import load_tokenizer

    from speechmapper_plugin.tiny_assets.llama3_tiktoken import (
        llama3_tiktoken_card_fields,
        write_llama3_tiktoken,
    )

    sentences = training_sentences()
    path = write_llama3_tiktoken(tmp_path / "tokenizer.model", sentences)
    lines = path.read_text().splitlines()
    assert len(lines) == 128_000
    assert [int(x.split()[1]) for x in lines] == list(range(128_000))
    assert len({x.split()[0] for x in lines}) == 128_000
    assert lines[0] == "IQ== 0"  # b"!", as in Meta's file

    card = AssetCard(
        "stand_in", {"name": "stand_in", **llama3_tiktoken_card_fields(path)}
    )
    tokenizer = load_tokenizer(card)
    info = tokenizer.vocab_info
    assert info.size == 128_256
    assert (info.bos_idx, info.eos_idx, info.pad_idx) == (128_000, 128_009, 128_004)
    raw = tokenizer.create_raw_encoder()
    assert raw("<|end_of_text|>").tolist() == [128_001]
    assert raw("<|reserved_special_token_246|>").tolist() == [128_255]

    decoder = tokenizer.create_decoder(skip_special_tokens=False)
    ids = torch.randint(0, 128_256, (300,), generator=torch.Generator().manual_seed(0))
    for idx in [0, 255, 256, 127_999, 128_255, *ids.tolist()]:
        assert decoder(torch.tensor([idx])) != "", idx

    # The learned merges: a training sentence round-trips in few tokens.
    encoded = raw(sentences[1])
    assert decoder(encoded) == sentences[1]
    assert len(encoded) < len(sentences[1].encode()) / 2


def test_llm_writer_tiktoken_option_uses_the_released_special_ids(
    tmp_path: Path,
) -> None:
    """``tokenizer="tiktoken"``: Meta's ``tokenizer.model`` next to the
    shards, the card reading it, and BOS/EOS at 128000/128009 in the LLM's
    ``config.json`` (the toy ``tokenizer.json``'s ids before)."""
    from fairseq2.assets import AssetCard
    from fairseq2.data.tokenizers import load_tokenizer

    dims = TinyLlamaDims(model_dim=8, num_layers=1, intermediate_size=64)
    kwargs: dict[str, Any] = {
        "card_name": "rehearsal_tiny",
        "sentences": training_sentences(),
        "dims": dims,
        "tokenizer": "tiktoken",
    }
    with pytest.raises(ValueError, match="ids up to 128009.*1024 embedding rows"):
        write_llama3_llm(tmp_path / "small", vocab_rows=1024, **kwargs)

    llm = write_llama3_llm(tmp_path / "llm", **kwargs)
    config = json.loads((tmp_path / "llm" / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (128_000, 128_009)
    assert not (tmp_path / "llm" / "tokenizer.json").exists()
    card = llm.card
    assert card["tokenizer"] == str(tmp_path / "llm" / "tokenizer.model")
    assert card["tokenizer_config"] == {"impl": "tiktoken", "use_eot": True}
    tokenizer = load_tokenizer(AssetCard("t", {"name": "t", **card}))
    assert tokenizer.vocab_info.size == 128_256 == config["vocab_size"]


def test_replan_rebuilds_the_plan_columns_from_the_recorded_run(
    tmp_path: Path,
) -> None:
    """``--replan`` recomputes plan and measured/plan from a recorded table
    (peaks, batches, import baseline) without running a step. Stage 1 worked
    by hand: the paper projector at output 2048 has P = 270,743,552
    parameters (tests/test_memory_plan.py's block formula, the last
    projection 4096 -> 2048); 16 B x P of
    weights, gradients and AdamW, the bf16 target table 2 x 128,256 x 2,048,
    autocast's copies 2 B x P, the checkpoint's host copy 12 B x P, 2,297
    frames x 290,446 B measured, and the recorded 754 MiB baseline."""
    import benchmarks.rehearsal as rehearsal

    def block(d_in: int, h: int, f: int, d_out: int) -> int:
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        return d_in * h * 6 + h + 6 * layer + 2 * h + (h * d_out + d_out)

    # output_dim changes the last projection only (4096 -> 2048)
    p = block(1024, 1024, 1536, 2048) + block(2048, 2048, 3072, 4096)
    p += 4096 * 2048 + 2048
    assert p == 270_743_552
    stage1 = 754 * 2**20 + 16 * p + 2 * 128_256 * 2048 + 2 * p + 12 * p + 2297 * 290_446

    def row(step: str, peak: int, batch: dict[str, float] | None) -> dict[str, Any]:
        figures: dict[str, Any] = {"steps": 2}
        if batch is not None:
            figures["batch"] = batch
        return {"step": step, "ok": True, "peak_rss_mib": peak, "figures": figures}

    rows = [
        row("speech", 904, None),
        row("stage1", 10_854, {"frames": 2297.0, "examples": 24.0}),
        row("stage2", 8_004, {"frames": 0.0, "examples": 6.0, "response_tokens": 62.0}),
    ]
    rows[1]["plan_mib"] = 1  # a stale plan is replaced
    results = tmp_path / "rehearsal"
    results.with_suffix(".json").write_text(json.dumps(rows))
    plan_file = tmp_path / "rehearsal_memory_plan.json"
    plan_file.write_text(json.dumps({"import_baseline_mib (measured)": 754}))

    assert rehearsal.main(["--replan", "--results", str(results)]) == 0
    out = json.loads(results.with_suffix(".json").read_text())
    assert "plan_mib" not in out[0]
    assert out[1]["plan_mib"] == round(stage1 / 2**20) == 9637
    assert out[1]["measured_over_plan"] == round(10_854 / 9637, 2) == 1.13
    terms = json.loads(plan_file.read_text())
    assert out[2]["plan_mib"] == terms["stage2"]["total_mib"]
    # Stage 2's FSDP rank stages its shard of the checkpoint: 12 B x P / 2.
    assert terms["stage2"]["checkpoint_staging_mib"] == round(6 * p / 2**20)
    assert "| stage1 | yes |" in results.with_suffix(".md").read_text()

    plan_file.unlink()
    with pytest.raises(FileNotFoundError, match="run `python -m benchmarks.rehearsal`"):
        rehearsal.main(["--replan", "--results", str(results)])
