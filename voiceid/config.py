"""All VOICEID_* settings in one place.

Every tunable of the service is read here and nowhere else, so an operator can see the whole
surface in one file and `voiceid` behaves the same from the CLI, the API and the tests.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEFAULT_DATA_DIR = Path(user_data_dir("voiceid", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEID_", env_file=None, extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(_DEFAULT_DATA_DIR, description="Service state: SQLite file, key file, caches.")
    model_dir: Path = Field(
        _DEFAULT_DATA_DIR / "models" / "spkrec-ecapa-voxceleb",
        description="Local copy of SpeechBrain spkrec-ecapa-voxceleb; verified by hash before loading.",
    )
    dev_data_dir: Path = Field(
        Path(__file__).resolve().parent.parent.parent / "shared" / "data",
        description="Real speech used by tests, eval and bench (never copied into the repo).",
    )

    # --- inference -----------------------------------------------------------------------
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = torch's default.")
    embed_batch_seconds: float = Field(
        120.0, gt=0, description="Max seconds of (padded) audio per batch when embedding many files."
    )
    inference_workers: int = Field(2, ge=1, description="Worker threads for inference in the service.")
    inference_queue: int = Field(
        8, ge=0, description="Requests allowed to wait for a worker before the API answers 503."
    )

    # --- audio limits --------------------------------------------------------------------
    max_upload_bytes: int = Field(16 * 1024 * 1024, gt=0)
    max_audio_s: float = Field(180.0, gt=0, description="Longest accepted utterance (seconds).")
    min_net_speech_s: float = Field(
        1.0, gt=0, description="Below this much detected speech no embedding is attempted (AUDIO_TOO_SHORT)."
    )
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    vad_min_silence_ms: int = Field(300, ge=0)
    vad_speech_pad_ms: int = Field(100, ge=0)
    vad_min_speech_ms: int = Field(250, ge=0)

    @property
    def models_root(self) -> Path:
        return self.model_dir.parent


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
