"""What scoring needs besides the texts: the config sections of ``recipes.evaluate``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.evaluation.judge_prompt import (
    DEFAULT_JUDGE_MODE,
    JUDGE_MODES,
    JudgeMode,
)
from speechmapper_plugin.evaluation.language import (
    DEFAULT_CANDIDATES,
    LanguageIdentifierError,
    candidate_codes,
)
from speechmapper_plugin.evaluation.translation import COMET_MODEL

EvalTask = Literal["asr", "st", "sqa", "custom"]

EVAL_TASKS: tuple[str, ...] = ("asr", "st", "sqa", "custom")


@dataclass(kw_only=True)
class ScoringSection:
    task: EvalTask | None = None
    """Score every example as this task; default: each example's own
    ``task`` (instruction file) or ``prompt.task`` (manifest). Examples of
    other tasks (``sqa`` from a manifest, unknown labels) count as ``custom``:
    only their failure signatures are scored."""

    default_lang: str = "en"
    """The language of examples without ``lang``: picks the ASR normaliser
    (Whisper English for ``en``, basic otherwise) and the language an ASR or
    SQA answer must be in."""

    language_candidates: list[str] = field(
        default_factory=lambda: list(DEFAULT_CANDIDATES)
    )
    """The languages language identification chooses from (expected
    languages are added)."""

    comet: bool = True
    """Write ``comet/<lang>/{src,hyp,ref}.txt`` for translations with a source
    transcript, and score them if ``comet-score`` is on PATH."""

    comet_model: str = COMET_MODEL

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        try:
            candidate_codes(self.language_candidates)
        except LanguageIdentifierError as ex:
            result.add_error(f"`scoring.language_candidates`: {ex}")
        if not self.default_lang.strip():
            result.add_error("`scoring.default_lang` must be a language code.")
        return result


JUDGE_CARD_REQUIRED: Final = (
    "`judge.enabled=true` needs `judge.card`, the asset card of the judge LLM: the judge is "
    "never silently the evaluated LLM. The SpeechMapper paper reports spoken-QA accuracy "
    "from an LLM judge it does not name (AudioBench's judge is Llama-3-70B-Instruct); "
    "set e.g. `judge.card=<card of a larger instruct LLM>`, or `judge.card=<llm.name>` "
    "to let the evaluated LLM judge itself (allowed, logged as self-judging)."
)


@dataclass(kw_only=True)
class JudgeSection:
    """The LLM-as-judge for free-form spoken-QA answers (off by default: it
    loads an LLM; multiple-choice answers are scored by the choice rule)."""

    enabled: bool = False

    card: str | None = None
    """The judge LLM's asset card, used text only; required when ``enabled``.
    Naming the evaluated LLM (``llm.name``) is allowed but logged as
    self-judging."""

    mode: JudgeMode = DEFAULT_JUDGE_MODE
    """``accuracy``: correct or not per answer (``Correct: yes|no``), reported
    as accuracy with its Wilson interval (the paper's metric); ``score``: the
    AudioBench 0-5 rating, reported as its mean."""

    prompt_file: Path | None = None
    """The judge prompt; default: the mode's shipped file
    (``judge_accuracy_prompt.txt`` or ``judge_prompt.txt``)."""

    cache_dir: Path | None = None
    """Where verdicts are cached; default: ``OUT/judge_cache``. Share one
    between runs to judge an answer once."""

    dtype: str | None = None
    """``float32``/``bfloat16``/``float16``; default: the card's."""

    batch_size: int = 8

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.enabled and not (self.card or "").strip():
            result.add_error(JUDGE_CARD_REQUIRED)
        if self.mode not in JUDGE_MODES:
            result.add_error(
                f"`judge.mode` must be one of {', '.join(JUDGE_MODES)}, but is '{self.mode}'."
            )
        if self.batch_size < 1:
            result.add_error(
                f"`judge.batch_size` must be positive, but is {self.batch_size}."
            )
        if self.dtype is not None and self.dtype not in (
            "float32",
            "bfloat16",
            "float16",
        ):
            result.add_error(
                f"`judge.dtype` must be float32, bfloat16 or float16, but is '{self.dtype}'."
            )
        if self.prompt_file is not None and not self.prompt_file.expanduser().is_file():
            result.add_error(f"`judge.prompt_file`: {self.prompt_file} is not a file.")
        return result
