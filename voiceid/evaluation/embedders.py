"""Utterance embedders that `voiceid eval` can compare on the same trials.

- `voiceid`: the product path (decode -> 16 kHz -> VAD -> ECAPA), exactly as the API runs it.
- `speechbrain-bare`: the baseline the issue names: SpeechBrain's own `EncoderClassifier`
  `encode_batch` on the whole decoded file at 16 kHz, no VAD.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.resample import MODEL_RATE, resample
from voiceid.config import Settings
from voiceid.engine import Engine
from voiceid.models.files import MODEL_VERSION

EmbedFn = Callable[[bytes, str], npt.NDArray[np.float32]]
SpeechFn = Callable[[bytes, str], float]  # net speech (s) as the product's front end measures it
EMBEDDERS = ("voiceid", "speechbrain-bare")


def voiceid_embedder(settings: Settings) -> tuple[EmbedFn, Engine]:
    engine = Engine.embedding_only(settings)

    def embed(data: bytes, content_type: str) -> npt.NDArray[np.float32]:
        return engine.analyse(data, content_type).vector

    return embed, engine


def speech_meter(settings: Settings) -> SpeechFn:
    """Net speech of audio through the product's decoder and VAD (no embedding)."""
    front_end = FrontEnd(FrontEndConfig.from_settings(settings))

    def measure(data: bytes, content_type: str) -> float:
        return float(front_end.analyse(front_end.decode(data, content_type))[2].net_speech_s)

    return measure


def speechbrain_bare_embedder(settings: Settings) -> EmbedFn:
    from speechbrain.inference.speaker import EncoderClassifier

    from voiceid.models.files import ALL_FILES, verify_model_dir

    verify_model_dir(settings.model_dir, ALL_FILES)
    savedir = tempfile.mkdtemp(prefix="voiceid-sb-")  # never inside the model dir (symlinks)
    classifier: Any = EncoderClassifier.from_hparams(
        source=str(settings.model_dir),
        savedir=savedir,
        overrides={"pretrained_path": str(settings.model_dir)},
        run_opts={"device": "cpu"},
    )
    engine_front = FrontEnd(FrontEndConfig.from_settings(settings))

    def embed(data: bytes, content_type: str) -> npt.NDArray[np.float32]:
        decoded = engine_front.decode(data, content_type)
        wave = resample(decoded.samples, decoded.sample_rate, MODEL_RATE)
        with torch.inference_mode():
            emb = classifier.encode_batch(torch.from_numpy(wave).unsqueeze(0))[0, 0].numpy()
        out: npt.NDArray[np.float32] = (emb / np.linalg.norm(emb)).astype(np.float32)
        return out

    return embed


def embedder_version(name: str) -> str:
    return MODEL_VERSION if name == "voiceid" else f"{MODEL_VERSION}+bare"
