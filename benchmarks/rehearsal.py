"""The dress rehearsal: the paper's configs at the paper's shapes, on random weights.

    python -m benchmarks.rehearsal [--out DIR] [--steps assets,speech,...] [--force]
    make rehearsal

Writes random-weight checkpoints at the real shapes in the released layouts
(``benchmarks/rehearsal_assets.py``), then runs the recipes the SLURM driver
(``scripts/slurm/*.sbatch``) runs, with the same config files, changing only
card names, data paths, step counts and what a CPU cannot do (noted per step):

  sm4t          SeamlessM4T-v2 large speech encoder (580.5M) as HF safetensors
                shards and as Meta's fairseq1 .pt
  sm4t_check    both cards load through the plugin and give the same features
  llm           Llama-3.2-1B-shaped untied LLM (bf16 shards) + a Llama-3
                tiktoken tokenizer.model of 128,000 ranks (every row decodes)
  speech        a few minutes of espeak speech (train/dev manifests)
  extract       layer-24 features (extract_features/configs/sm4t_v2_large.yaml)
  stage1        paper projector, paper batch (stage1/configs/paper_llama3_1_8b.yaml,
                bf16 autocast), a few steps; output_dim 2048 (the LLM's width)
  stage1_fp16   the same with the V100 path (trainer.mixed_precision.dtype=float16);
                not in the default steps (no fp16 GEMMs on a CPU)
  instructions  ASR instruction files from the stores
  stage2        stage2/configs/task_agnostic.yaml under FSDP, 2 processes (gloo)
  evaluate      evaluate/configs/llama3_1_8b.yaml on a few dev utterances
  export        the stage-2 projector as a self-contained directory
  reload        the export through SpeechMapperPipeline (transcribe one file)

Each step runs in its own process (its peak RSS is the largest process's,
torchrun's workers included) and leaves ``DIR/steps/STEP.json``; a step that
has one is skipped unless ``--force``, which removes the step's outputs first
(a recipe would otherwise resume from its checkpoints). Without it the
rehearsal resumes where it stopped.
The table goes to ``benchmarks/results/rehearsal.{json,md}``; ``--replan``
recomputes only its memory-plan columns from the recorded run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = REPO / "benchmarks" / "results"
DEFAULT_OUT: Final = REPO / "build" / "rehearsal"

SFM_CARD: Final = "rehearsal_sm4t_v2_large"
LLM_CARD: Final = "rehearsal_llama3_2_1b"
EXPORT_CARD: Final = "rehearsal_projector"
LLM_WIDTH: Final = 2048


@dataclass(frozen=True)
class Settings:
    out: Path
    train_utterances: int
    dev_utterances: int
    stage1_steps: int
    stage2_steps: int
    eval_utterances: int
    nproc: int
    stage2_frames: int
    stage2_extra: tuple[str, ...] = ()

    @property
    def cards(self) -> Path:
        return self.out / "cards" / "rehearsal.yaml"

    def step_file(self, step: str) -> Path:
        return self.out / "steps" / f"{step}.json"

    def log(self, step: str) -> Path:
        return self.out / "logs" / f"{step}.log"


# -- steps (each runs in a child process; returns its figures) -----------------


def step_sm4t(s: Settings) -> dict[str, Any]:
    from benchmarks.rehearsal_assets import (
        build_sm4t_speech_encoder,
        sm4t_cards,
        speech_encoder_state_dict,
        write_sm4t_fairseq1,
        write_sm4t_hf,
    )

    encoder = build_sm4t_speech_encoder()
    num_parameters = sum(p.numel() for p in encoder.parameters())
    state = speech_encoder_state_dict(encoder)
    del encoder
    hf_dir = write_sm4t_hf(s.out / "assets" / "sm4t_hf", state, shard_bytes=1 << 30)
    pt = write_sm4t_fairseq1(s.out / "assets" / "seamlessM4T_v2_large.pt", state)
    _add_cards(s, sm4t_cards(SFM_CARD, hf_dir, pt))
    return {
        "parameters": num_parameters,
        "hf_bytes": sum(f.stat().st_size for f in hf_dir.glob("*.safetensors")),
        "fairseq1_bytes": pt.stat().st_size,
    }


def step_sm4t_check(s: Settings) -> dict[str, Any]:
    """Both layouts through the plugin's loader: same weights, same features."""
    import torch

    from speechmapper_plugin.models.sm4t_speech_encoder import SpeechFeatureExtractor

    _init_fairseq2(s)
    from fairseq2.models import load_model

    torch.manual_seed(0)
    wave = torch.randn(16_000 * 2) * 0.1
    features = []
    started = time.perf_counter()
    for card in (SFM_CARD, f"{SFM_CARD}_meta"):
        model = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
        extractor = SpeechFeatureExtractor(model.eval(), layer=24, layer_norm=True)  # type: ignore[arg-type]
        with torch.inference_mode():
            seqs, _ = extractor([wave])
        features.append(seqs[0])
        del model, extractor
    diff = float((features[0] - features[1]).abs().max())
    if diff > 1e-4:
        raise RuntimeError(
            f"The fairseq1 and HF layouts give different features: max |diff| {diff}."
        )
    return {
        "max_abs_diff": diff,
        "frames": int(features[0].shape[0]),
        "finite": bool(torch.isfinite(features[0]).all()),
        "load_and_extract_s": time.perf_counter() - started,
    }


def step_llm(s: Settings) -> dict[str, Any]:
    from benchmarks.rehearsal_assets import write_llama3_llm
    from speechmapper_plugin.tiny_assets.sentences import training_sentences

    # Meta's layout: a tiktoken tokenizer.model of 128,000 ranks, so that each
    # of the 128,256 rows a random LLM samples decodes (a tokenizer.json of a
    # few hundred tokens made the generated text come out empty).
    llm = write_llama3_llm(
        s.out / "assets" / "llama3_2_1b",
        card_name=LLM_CARD,
        sentences=training_sentences(),
        tokenizer="tiktoken",
    )
    _add_cards(s, [llm.card])
    return {
        "parameters": llm.num_parameters,
        "tokenizer": Path(str(llm.card["tokenizer"])).name,
    }


def step_speech(s: Settings) -> dict[str, Any]:
    from speechmapper_plugin.tiny_assets.sentences import templated_sentences
    from speechmapper_plugin.tiny_assets.speech import synthesize_corpus

    sentences = templated_sentences(s.train_utterances + s.dev_utterances, seed=5)
    seconds = {}
    for split, rows in (
        ("train", sentences[: s.train_utterances]),
        ("dev", sentences[s.train_utterances :]),
    ):
        manifest = synthesize_corpus(
            s.out / "speech",
            rows,
            manifest_name=f"{split}.tsv",
            id_prefix=f"{split}_",
            num_workers=2,
        )
        seconds[split] = _manifest_seconds(manifest)
    return {"audio_s": seconds}


def step_extract(s: Settings) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for split in ("train", "dev"):
        manifest = s.out / "speech" / f"{split}.tsv"
        started = time.perf_counter()
        _recipe(
            s,
            "extract",
            "extract",
            "sm4t_v2_large",
            s.out / f"extract_{split}",
            f"model.name={SFM_CARD}",
            f"dataset.split={split}",
            f"dataset.config_overrides.manifests.{split}={json.dumps(str(manifest))}",
        )
        audio = _manifest_seconds(manifest)
        figures[f"{split}_audio_s_per_s"] = audio / (time.perf_counter() - started)
    figures["throughput"] = (
        f"{figures['train_audio_s_per_s']:.3f} audio s/s (train, incl. loading)"
    )
    return figures


def _stage1(s: Settings, step: str, *extra: str) -> dict[str, Any]:
    splits = {
        "train": [str(s.out / "extract_train" / "features")],
        "dev": [str(s.out / "extract_dev" / "features")],
    }
    n = s.stage1_steps
    out = s.out / step
    _recipe(
        s,
        step,
        "stage1",
        "paper_llama3_1_8b",
        out,
        f"target_llm.name={LLM_CARD}",
        f"model.config_overrides.output_dim={LLM_WIDTH}",
        f"dataset.config_overrides.splits={json.dumps(splits)}",
        *_regime(n),
        *extra,
    )
    return _training_figures(out)


def step_stage1(s: Settings) -> dict[str, Any]:
    return _stage1(s, "stage1")


def step_stage1_fp16(s: Settings) -> dict[str, Any]:
    return _stage1(s, "stage1_fp16", "trainer.mixed_precision.dtype=float16")


def step_instructions(s: Settings) -> dict[str, Any]:
    folder = s.out / "instructions"
    folder.mkdir(parents=True, exist_ok=True)
    for split, pool in (("train", "train"), ("dev", "eval")):
        _run(
            s,
            "instructions",
            [
                sys.executable,
                "-m",
                "speechmapper_plugin.data.instructions",
                "asr",
                "--store",
                str(s.out / f"extract_{split}" / "features"),
                "--out",
                str(folder / f"asr_{split}.jsonl"),
                "--pool",
                pool,
            ],
        )
    return {"lines": sum(1 for _ in (folder / "asr_train.jsonl").open())}


def step_stage2(s: Settings) -> dict[str, Any]:
    folder = s.out / "instructions"
    dataset = {
        "splits": {
            "train": [str(folder / "asr_train.jsonl")],
            "dev": [str(folder / "asr_dev.jsonl")],
        },
        "feature_stores": [
            str(s.out / "extract_train" / "features"),
            str(s.out / "extract_dev" / "features"),
        ],
    }
    out = s.out / "stage2"
    _recipe(
        s,
        "stage2",
        "stage2",
        "task_agnostic",
        out,
        f"common.assets.prev_checkpoint_dir={json.dumps(str(s.out / 'stage1' / 'checkpoints'))}",
        f"llm.name={LLM_CARD}",
        f"dataset.config_overrides={json.dumps(dataset)}",
        "trainer.data_parallelism=fsdp",
        # CPU cut: the paper's 8,000 frames per rank through a 1.5B LLM is
        # minutes per step on two cores.
        f"dataset.max_num_frames={s.stage2_frames}",
        *_regime(s.stage2_steps),
        *s.stage2_extra,
        nproc=s.nproc,
    )
    return _training_figures(out)


def step_evaluate(s: Settings) -> dict[str, Any]:
    manifest = s.out / "speech" / "dev.tsv"
    lines = manifest.read_text().splitlines()
    subset = s.out / "speech" / "eval.tsv"
    subset.write_text("\n".join(lines[: 1 + s.eval_utterances]) + "\n")
    out = s.out / "evaluate"
    started = time.perf_counter()
    _recipe(
        s,
        "evaluate",
        "evaluate",
        "llama3_1_8b",
        out,
        f"common.assets.prev_checkpoint_dir={json.dumps(str(s.out / 'stage2' / 'checkpoints'))}",
        f"llm.name={LLM_CARD}",
        f"input.manifest={json.dumps(str(subset))}",
        "prompt.task=asr",
        # CPU cuts: COMET downloads a model; a random LLM never stops early.
        "scoring.comet=false",
        "generation.max_new_tokens=16",
    )
    elapsed = time.perf_counter() - started
    rows = [json.loads(x) for x in (out / "hypotheses.jsonl").read_text().splitlines()]
    texts = [str(r["hypothesis"]) for r in rows]
    return {
        "utterances": len(rows),
        "utterances_per_s": round(len(rows) / elapsed, 3),
        "text_chars": [len(t) for t in texts],
        "text": texts[0][:60] if texts else "",
    }


def step_export(s: Settings) -> dict[str, Any]:
    target = s.out / "export"
    _run(
        s,
        "export",
        [
            sys.executable,
            "-m",
            "speechmapper_plugin.export",
            str(s.out / "stage2"),
            str(target),
            "--name",
            EXPORT_CARD,
            "--overwrite",
        ],
    )
    return {"bytes": sum(f.stat().st_size for f in target.rglob("*") if f.is_file())}


def step_reload(s: Settings) -> dict[str, Any]:
    import torch

    _init_fairseq2(s, s.out / "export")
    from speechmapper_plugin.generation import GenerationConfig
    from speechmapper_plugin.speech_llm.pipeline import SpeechMapperPipeline

    pipeline = SpeechMapperPipeline.from_cards(
        None,
        EXPORT_CARD,
        LLM_CARD,
        device="cpu",
        dtype=torch.bfloat16,
        generation=GenerationConfig(max_new_tokens=8),
    )
    wav = next((s.out / "speech" / "audio").glob("dev_*.wav"))
    started = time.perf_counter()
    text = pipeline.transcribe(wav)
    return {
        "text_chars": len(text),
        "text": text[:60],
        "transcribe_s": round(time.perf_counter() - started, 1),
    }


STEPS: Final[dict[str, Callable[[Settings], dict[str, Any]]]] = {
    "sm4t": step_sm4t,
    "sm4t_check": step_sm4t_check,
    "llm": step_llm,
    "speech": step_speech,
    "extract": step_extract,
    "stage1": step_stage1,
    "stage1_fp16": step_stage1_fp16,
    "instructions": step_instructions,
    "stage2": step_stage2,
    "evaluate": step_evaluate,
    "export": step_export,
    "reload": step_reload,
}


STEP_OUTPUTS: Final[dict[str, tuple[str, ...]]] = {
    "sm4t": ("assets/sm4t_hf", "assets/seamlessM4T_v2_large.pt"),
    "llm": ("assets/llama3_2_1b",),
    "speech": ("speech",),
    "extract": ("extract_train", "extract_dev"),
    "stage1": ("stage1",),
    "stage1_fp16": ("stage1_fp16",),
    "instructions": ("instructions",),
    "stage2": ("stage2",),
    "evaluate": ("evaluate",),
    "export": ("export",),
}
"""What each step writes under ``--out``. A recipe started on a folder with
checkpoints resumes from them, so ``--force`` removes these first."""


def start_over(s: Settings, step: str) -> list[Path]:
    """Remove what ``step`` wrote (its folders, step file, log) so that it runs
    from scratch; returns the paths removed."""
    removed = []
    paths = [s.out / x for x in STEP_OUTPUTS.get(step, ())]
    paths += [s.step_file(step), s.log(step)]
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


CPU_SKIPPED: Final = ("stage1_fp16",)
"""Left out by default: CPUs have no fp16 GEMMs, and one paper-batch step
did not finish in 7 minutes on two cores (bf16: about a minute). Name it in
``--steps`` on a GPU machine."""


# -- helpers -------------------------------------------------------------------


def _add_cards(s: Settings, cards: Iterable[dict[str, object]]) -> None:
    """Merge ``cards`` into the rehearsal's card file (by name)."""
    from speechmapper_plugin.tiny_assets import write_card_file

    existing: dict[str, dict[str, object]] = {}
    index = s.cards.with_suffix(".json")
    if index.is_file():
        existing = json.loads(index.read_text())
    for card in cards:
        existing[str(card["name"])] = card
    s.cards.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps(existing, indent=2))
    write_card_file(s.cards, list(existing.values()))


def _init_fairseq2(s: Settings, *more: Path) -> None:
    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets

    def extras(container: Any) -> None:
        for path in (s.cards.parent, *more):
            register_file_assets(container, path)

    init_fairseq2(extras=extras)


def _manifest_seconds(manifest: Path) -> float:
    rows = manifest.read_text().splitlines()[1:]
    return sum(int(row.split("\t")[2]) for row in rows) / 16_000


def _regime(num_steps: int) -> list[str]:
    return [
        f"regime.num_steps={num_steps}",
        "regime.validate_at_start=false",
        f"regime.validate_every_n_steps={num_steps}",
        f"regime.checkpoint_every_n_steps={num_steps}",
        "regime.publish_metrics_every_n_steps=1",
        # The paper's warm-up is longer than the rehearsal.
        "lr_scheduler.config.num_warmup_steps=1",
    ]


def _recipe(
    s: Settings,
    step: str,
    command: str,
    config: str,
    out: Path,
    *overrides: str,
    nproc: int = 1,
) -> None:
    """``speechmapper COMMAND OUT --config-file recipes/…/configs/CONFIG.yaml``,
    as the sbatch scripts call it, with the rehearsal's cards."""
    from recipes.cli import SUBCOMMANDS

    module = SUBCOMMANDS[command].module
    folder = module.split(".")[-1]
    if nproc == 1:
        launcher = [sys.executable, "-m"]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        launcher = [torchrun, "--standalone", f"--nproc-per-node={nproc}", "-m"]
    _run(
        s,
        step,
        [
            *launcher,
            module,
            str(out),
            "--config-file",
            str(REPO / "recipes" / folder / "configs" / f"{config}.yaml"),
            "--config",
            *overrides,
            f"common.assets.extra_paths={json.dumps([str(s.cards.parent)])}",
            "common.metric_recorders.tensorboard.enabled=false",
            "--no-rich",
        ],
    )


def _run(s: Settings, step: str, command: Sequence[str]) -> None:
    log = s.log(step)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "FAIRSEQ2_NO_PROGRESS": "1",
        "FAIRSEQ2_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }
    with log.open("a") as fp:
        fp.write("$ " + " ".join(command) + "\n")
        fp.flush()
        done = subprocess.run(command, cwd=REPO, env=env, stdout=fp, stderr=fp)
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{command[2]} exited with {done.returncode}:\n{tail}")


def _training_figures(out: Path) -> dict[str, Any]:
    """Loss finiteness and throughput (per second of compute) from fairseq2's
    JSONL metric records."""
    records = []
    for path in (out / "metrics").glob("train*.jsonl"):
        records += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    losses = [float(r["Loss"]) for r in records if "Loss" in r]
    compute = sum(float(r.get("Compute Time", 0.0)) for r in records)

    def per_step(key: str) -> float:
        return round(sum(float(r.get(key, 0.0)) for r in records) / steps, 1)

    steps = max(len(records), 1)
    figures: dict[str, Any] = {
        "steps": len(records),
        # The batch the memory plan is computed for (all ranks together).
        "batch": {
            "frames": per_step("num_frames"),
            "examples": per_step("Number of Examples"),
            "response_tokens": per_step("num_response_tokens"),
        },
        "loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "losses": [round(x, 5) for x in losses],
        "compute_s_per_step": round(compute / max(len(records), 1), 1),
    }
    for key, name in (
        ("num_frames", "frames_per_s"),
        ("Number of Examples", "examples_per_s"),
        ("num_response_tokens", "response_tokens_per_s"),
        ("Number of Elements", "elements_per_s"),
        ("Number of Target Elements", "target_elements_per_s"),
    ):
        total = sum(float(r.get(key, 0.0)) for r in records)
        if total and compute:
            figures[name] = round(total / compute, 2)
    return figures


# -- driver --------------------------------------------------------------------


def run_child(s: Settings, step: str) -> int:
    try:
        figures = STEPS[step](s)
    except Exception as ex:  # noqa: BLE001 - reported in the table
        message = f"{type(ex).__name__}: {ex}"
        print(f"{step} failed: {message}", file=sys.stderr)
        error = s.out / "steps" / f"{step}.error"
        error.parent.mkdir(parents=True, exist_ok=True)
        error.write_text(message[-2000:])
        return 1
    path = s.step_file(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def run_step(s: Settings, step: str) -> dict[str, Any]:
    """Runs ``step`` in a child process; its wall time and peak RSS (the
    largest of it and its descendants, as the kernel reports)."""
    command = [sys.executable, "-m", "benchmarks.rehearsal", "--out", str(s.out)]
    command += ["--child", step, *_settings_args(s)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    row: dict[str, Any] = {
        "step": step,
        "ok": proc.returncode == 0,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
    }
    error = s.out / "steps" / f"{step}.error"
    if not row["ok"] and error.is_file():
        row["error"] = error.read_text()
    if row["ok"]:
        error.unlink(missing_ok=True)
        row["figures"] = json.loads(s.step_file(step).read_text())
        # The step file keeps the whole row: the table is rebuilt from them.
        s.step_file(step).write_text(json.dumps(row, indent=2) + "\n")
    return row


def finished_row(s: Settings, step: str) -> dict[str, Any] | None:
    path = s.step_file(step)
    if not path.is_file():
        return None
    row: dict[str, Any] = json.loads(path.read_text())
    return row if "figures" in row else None


def _settings_args(s: Settings) -> list[str]:
    return [
        f"--train-utterances={s.train_utterances}",
        f"--dev-utterances={s.dev_utterances}",
        f"--stage1-steps={s.stage1_steps}",
        f"--stage2-steps={s.stage2_steps}",
        f"--eval-utterances={s.eval_utterances}",
        f"--nproc={s.nproc}",
        f"--stage2-frames={s.stage2_frames}",
        *(f"--stage2-extra={x}" for x in s.stage2_extra),
    ]


def add_plans(
    s: Settings, rows: list[dict[str, Any]], *, baseline: float | None = None
) -> dict[str, Any]:
    """The memory plan's peak RSS for the finished training steps
    (``benchmarks.memory_plan.rehearsal_plans``, for the batches they ran)
    and measured/plan, written into ``rows``; returns the plan's terms, each
    with its arithmetic. ``baseline``: a recorded import baseline (bytes)
    instead of measuring it again."""
    from benchmarks.memory_plan import measure_import_baseline, rehearsal_plans

    # Step files of older runs have no batch figures: no plan for them.
    done = {
        r["step"]: r
        for r in rows
        if r.get("ok") and r["step"] in ("stage1", "stage2") and "batch" in r["figures"]
    }
    if not done:
        return {}
    import fairseq2.runtime.dependency

    if fairseq2.runtime.dependency._resolver is None:  # the hubs need it
        from fairseq2 import init_fairseq2

        init_fairseq2()
    if baseline is None:
        baseline = measure_import_baseline()
    stage2 = None
    if "stage2" in done:
        batch = done["stage2"]["figures"]["batch"]
        stage2 = {
            "frames": float(s.stage2_frames),  # the cap: an upper bound
            "rows": batch.get("examples", 0.0) / s.nproc,
            "response_tokens": batch.get("response_tokens", 0.0) / s.nproc,
        }
    stage1_frames = 0.0
    if "stage1" in done:
        stage1_frames = done["stage1"]["figures"]["batch"]["frames"]
    plans = rehearsal_plans(
        "llama3_2_1b",
        LLM_WIDTH,
        stage1_frames=stage1_frames,
        stage2=stage2,
        num_ranks=s.nproc,
        baseline=baseline,
    )
    terms: dict[str, Any] = {"import_baseline_mib (measured)": round(baseline / MIB)}
    for step, row in done.items():
        plan = plans.get(step)
        if plan is None or (step == "stage1" and not stage1_frames):
            continue
        row["plan_mib"] = round(plan.total / MIB)
        row["measured_over_plan"] = round(row["peak_rss_mib"] / row["plan_mib"], 2)
        parts = {
            name: getattr(plan, name)
            for name in (
                "baseline",
                "weights",
                "autocast_copies",
                "gradients",
                "optimizer",
                "activations",
                "checkpoint_staging",
                "loading",
                "training",
                "total",
            )
        }
        terms[step] = {f"{k}_mib": round(v / MIB) for k, v in parts.items()}
        terms[step]["arithmetic"] = dict(plan.arithmetic)
    return terms


def replan(s: Settings, results: Path) -> list[dict[str, Any]]:
    """Rebuilds the plan columns of ``results``' table (``.json``, ``.md``,
    ``_memory_plan.json``) from the recorded run: its peaks, batches and
    import baseline, without rerunning a step."""
    json_file = results.with_suffix(".json")
    plan_file = results.with_name(results.name + "_memory_plan.json")
    if not json_file.is_file() or not plan_file.is_file():
        raise FileNotFoundError(
            f"No recorded rehearsal at {json_file} and {plan_file}: run "
            "`python -m benchmarks.rehearsal` first."
        )
    rows: list[dict[str, Any]] = json.loads(json_file.read_text())
    recorded = json.loads(plan_file.read_text()).get("import_baseline_mib (measured)")
    if recorded is None:
        raise ValueError(
            f"{plan_file} records no import baseline: rerun the rehearsal's "
            "training steps (`--steps stage1,stage2 --force`)."
        )
    for row in rows:
        row.pop("plan_mib", None)
        row.pop("measured_over_plan", None)
    terms = add_plans(s, rows, baseline=float(recorded) * MIB)
    _write_results(results, rows, terms)
    return rows


def _write_results(
    results: Path, rows: list[dict[str, Any]], plan_terms: dict[str, Any]
) -> str:
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    plan_file = results.with_name(results.name + "_memory_plan.json")
    plan_file.write_text(json.dumps(plan_terms, indent=2) + "\n")
    table = write_table(rows)
    results.with_suffix(".md").write_text(table)
    return table


MIB: Final = 2**20


def write_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| step | ok | wall (s) | peak RSS (MiB) | plan (MiB) | measured/plan | text chars | figures |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        figures = r.get("figures", r.get("error", ""))
        text = json.dumps(figures, default=str)[:300].replace("|", "/")
        chars = figures.get("text_chars", "") if isinstance(figures, dict) else ""
        lines.append(
            f"| {r['step']} | {'yes' if r['ok'] else 'NO'} | {r.get('wall_s', '')} "
            f"| {r.get('peak_rss_mib', '')} | {r.get('plan_mib', '')} "
            f"| {r.get('measured_over_plan', '')} | {chars} | {text} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--steps",
        default=",".join(s for s in STEPS if s not in CPU_SKIPPED),
        help=f"comma-separated, of {', '.join(STEPS)} (default: all but {', '.join(CPU_SKIPPED)})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rerun the steps from scratch (their outputs are removed first)",
    )
    parser.add_argument("--train-utterances", type=int, default=24)
    parser.add_argument("--dev-utterances", type=int, default=6)
    parser.add_argument("--stage1-steps", type=int, default=3)
    parser.add_argument("--stage2-steps", type=int, default=2)
    parser.add_argument("--eval-utterances", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2, help="stage-2 FSDP processes")
    parser.add_argument(
        "--stage2-frames", type=int, default=400, help="stage-2 frames per rank"
    )
    parser.add_argument(
        "--stage2-extra",
        action="append",
        default=[],
        help="a further stage-2 override (repeatable)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS / "rehearsal")
    parser.add_argument(
        "--replan",
        action="store_true",
        help="only recompute the memory plan's columns of --results from the "
        "recorded run (its peaks, batches and import baseline); runs no step",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    s = Settings(
        out=args.out.resolve(),
        train_utterances=args.train_utterances,
        dev_utterances=args.dev_utterances,
        stage1_steps=args.stage1_steps,
        stage2_steps=args.stage2_steps,
        eval_utterances=args.eval_utterances,
        nproc=args.nproc,
        stage2_frames=args.stage2_frames,
        stage2_extra=tuple(args.stage2_extra),
    )
    if args.child:
        return run_child(s, args.child)
    if args.replan:
        rows = replan(s, args.results)
        print(write_table(rows))
        return 0

    steps = [x.strip() for x in args.steps.split(",") if x.strip()]
    unknown = [x for x in steps if x not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")

    failed: dict[str, dict[str, Any]] = {}
    for step in steps:
        if finished_row(s, step) is not None and not args.force:
            print(f"{step}: done earlier (--force reruns it)")
            continue
        if args.force:
            for path in start_over(s, step):
                print(f"{step}: removed {path} (--force starts it over)")
        print(f"{step}: running (log: {s.log(step)})", flush=True)
        row = run_step(s, step)
        state = "ok" if row["ok"] else "FAILED"
        print(
            f"{step}: {state} in {row['wall_s']} s, peak RSS {row['peak_rss_mib']} MiB",
            flush=True,
        )
        if not row["ok"]:
            failed[step] = row
            break

    ordered = []
    for step in STEPS:
        found = finished_row(s, step) or failed.get(step)
        if found is not None:
            ordered.append(found)
    plan_terms = add_plans(s, ordered)
    table = _write_results(args.results, ordered, plan_terms)
    print(table)
    return 0 if all(r["ok"] for r in ordered) else 1


if __name__ == "__main__":
    sys.exit(main())
