"""All VOICEID_* settings in one place.

Every tunable of the service is read here and nowhere else, so an operator can see the whole
surface in one file and `voiceid` behaves the same from the CLI, the API and the tests.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Cosine-score thresholds on the ECAPA voiceprint. Provisional until the dev-set calibration
# (target FMR about 0.1 % at accept) lands; overridable with VOICEID_ACCEPT_THRESHOLD / _REJECT_.
DEFAULT_ACCEPT_THRESHOLD = 0.45
DEFAULT_REJECT_THRESHOLD = 0.30

# Raw cosine between ECAPA embeddings, measured on the dev set by bench/fraud_thresholds.py
# (docs/fraud.md): single utterance vs single utterance for the watchlist, voiceprint vs voiceprint
# for duplicates.
DEFAULT_WATCHLIST_THRESHOLD = 0.65
DEFAULT_DUPLICATE_THRESHOLD = 0.80

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
    # One intra-op thread per inference: requests run in parallel on the worker pool instead, which
    # gives the most verifications per core (silero-vad also pins torch to one thread on import).
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads per inference; 0 = torch's default.")
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
    vad_max_pause_s: float = Field(
        1.0, ge=0, description="Non-speech stretches longer than this are shortened to it before embedding."
    )

    # --- service: storage and secrets ------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite file in data_dir.",
    )
    admin_key: SecretStr | None = Field(None, description="Bootstraps an admin API key at start-up.")
    encryption_key: SecretStr | None = Field(
        None,
        description="Base64 (url-safe) 32-byte AES key for embeddings at rest; default: key file in data_dir.",
    )

    # --- service: enrolment and decisions ---------------------------------------------------
    enrol_min_speech_s: float = Field(20.0, gt=0, description="Net speech needed before a speaker is ENROLLED.")
    verify_min_speech_s: float = Field(3.0, gt=0, description="Below this net speech a verification is INCONCLUSIVE.")
    # Thresholds normally come from the channel's calibration (voiceid/verify/data/calibration.json,
    # set for a target false-match rate). Setting either variable pins both for every channel.
    # The defaults below apply only with VOICEID_SCORE_NORM=none and no calibration (raw cosine).
    accept_threshold: float = Field(DEFAULT_ACCEPT_THRESHOLD)
    reject_threshold: float = Field(DEFAULT_REJECT_THRESHOLD)
    score_norm: Literal["none", "s-norm", "as-norm"] = Field(
        "as-norm", description="Score normalisation against the impostor cohort of the call's channel."
    )
    score_top_n: int = Field(50, ge=1, description="AS-norm: cohort scores kept per side.")
    cohort_source: Literal["population", "builtin"] = Field(
        "population",
        description="Normalise against the operator's own enrolled voiceprints (population) or only the shipped "
        "LibriSpeech cohort (builtin).",
    )
    population_min: int = Field(
        50, ge=0, description="With fewer enrolled voiceprints than this, the shipped cohort is added to them."
    )
    calibration_file: Path | None = Field(
        None, description="calibration.json from `voiceid calibrate`; default: the one shipped in the package."
    )
    quality_min_speech_s: float = Field(
        6.0, ge=0, description="Less net speech than this counts as poor audio: the stricter thresholds apply."
    )
    quality_min_snr_db: float = Field(
        15.0, description="A lower estimated SNR counts as poor audio: the stricter thresholds apply."
    )
    lockout_rejects: int = Field(5, ge=1, description="Consecutive REJECTs that lock a speaker.")
    lockout_window_s: float = Field(86400.0, gt=0, description="How long a lockout lasts unless an admin unlocks.")

    # --- telephony adapter -------------------------------------------------------------------
    stream_max_s: float = Field(
        30.0, gt=0, description="A verification stream is decided (an enrolment stream cut) after this much audio."
    )
    stream_interim_s: float = Field(
        1.0, gt=0, description="New audio (seconds) between two interim scores of a stream."
    )
    audiosocket_host: str = Field("127.0.0.1", description="Interface of the Asterisk AudioSocket server.")
    audiosocket_port: int = Field(9092, ge=0, le=65535, description="TCP port of the AudioSocket server.")
    webhook_timeout_s: float = Field(3.0, gt=0, description="Timeout of the call-outcome webhook POST.")

    # --- fraud workspace (see docs/fraud.md for how the thresholds were chosen) ----------------
    attempt_retention_days: float = Field(
        30.0, gt=0, description="How long a verification's encrypted embedding is kept for analysts."
    )
    purge_interval_s: float = Field(3600.0, gt=0, description="How often the server purges expired embeddings.")
    watchlist_threshold: float = Field(
        DEFAULT_WATCHLIST_THRESHOLD, ge=-1, le=1, description="Raw cosine probe vs watchlist entry counted as a hit."
    )
    # Flag by default: a hit only adds WATCHLIST_MATCH; with W entries about W x 2e-4 of genuine
    # calls hit falsely (docs/fraud.md), too many to reject outright without an analyst.
    watchlist_action: Literal["reject", "flag"] = Field(
        "flag", description="A watchlist hit forces REJECT (and refuses enrolment), or only flags."
    )
    duplicate_threshold: float = Field(
        DEFAULT_DUPLICATE_THRESHOLD, ge=-1, le=1, description="Raw cosine between two voiceprints held as duplicates."
    )
    duplicate_action: Literal["review", "refuse"] = Field(
        "review", description="A duplicate enrolment is held as REVIEW_REQUIRED, or refused."
    )
    search_exact_max: int = Field(
        100_000, ge=0, description="Above this many vectors 1:N search uses the faiss HNSW index, not a matmul."
    )
    review_secret: SecretStr | None = Field(
        None, description="Signs review-page session cookies; default: a key file in data_dir."
    )
    review_session_max_age_s: int = Field(8 * 3600, gt=0, description="Review-page sign-in lifetime.")

    # --- presentation-attack detection: countermeasure and replay (issue 12, docs/antispoof.md) ----
    cm_enabled: bool = Field(True, description="Run the spoofing countermeasure beside the embedding on every call.")
    cm_model_dir: Path = Field(
        _DEFAULT_DATA_DIR / "models" / "aasist",
        description="Countermeasure model directory (manifest.json + model file); an ONNX drop-in works too.",
    )
    cm_max_windows: int = Field(
        4, ge=1, le=32, description="4-s windows the countermeasure scores per call at most (bounds its cost)."
    )
    cm_backend_file: Path | None = Field(
        None, description="Fitted PAD back-end (cm_backend.json); default: the one shipped in the package."
    )
    cm_thresholds_file: Path | None = Field(
        None, description="pad_thresholds.json from `voiceid calibrate-pad`; default: the one shipped."
    )
    cm_action: Literal["inconclusive", "reject"] = Field(
        "inconclusive", description="What a call the countermeasure flags becomes (never ACCEPT either way)."
    )
    cm_target_bpcer: float = Field(
        0.05, gt=0, lt=0.5, description="`voiceid calibrate-pad` default: share of genuine callers flagged."
    )
    replay_enabled: bool = Field(True, description="Fingerprint audio and flag a probe that replays earlier audio.")
    replay_threshold: float = Field(
        0.035, gt=0, le=1, description="Share of a probe's landmark hashes that must line up with one stored recording."
    )
    replay_max_fingerprints: int = Field(
        200, ge=1, description="Stored fingerprints compared per speaker at most (newest first)."
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        if self.reject_threshold > self.accept_threshold:
            raise ValueError("reject_threshold must not exceed accept_threshold")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Plain postgresql:// would pick psycopg2, which is not a dependency; psycopg 3 is.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{self.data_dir / 'voiceid.db'}"

    @property
    def cohort_dir(self) -> Path:
        return self.data_dir / "cohorts"

    @property
    def models_root(self) -> Path:
        return self.model_dir.parent


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
