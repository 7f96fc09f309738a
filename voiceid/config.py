"""All VOICEID_* settings in one place, grouped by concern.

Every tunable of the service is read here and nowhere else, so an operator can see the whole
surface in one file and `voiceid` behaves the same from the CLI, the API and the tests.

The settings stay one flat model (`settings.port`, `VOICEID_PORT`): the flat environment names are
the public contract, and nesting would rename them. The grouping is structural instead: each
concern is a section class below (its docstring is the section's title), `Settings` inherits them
all, and `SECTIONS` lists them in reading order. `scripts/settings_table.py` renders the README's
configuration table from exactly these classes, so a new field lands in the table under its concern.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from platformdirs import user_data_dir
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Cosine-score thresholds on the ECAPA voiceprint. Provisional until the dev-set calibration
# (target FMR about 0.1 % at accept) lands; overridable with VOICEID_ACCEPT_THRESHOLD / _REJECT_.
DEFAULT_ACCEPT_THRESHOLD = 0.45
DEFAULT_REJECT_THRESHOLD = 0.30

# Fraud desk thresholds on the calibrated LLR scale, chosen from bench/fraud_screening.py on the dev
# set (docs/fraud.md has the table).
DEFAULT_WATCHLIST_LLR = 5.0
DEFAULT_DUPLICATE_LLR = 8.0
DEFAULT_LINK_LLR = 6.0
DEFAULT_LINK_POOLED_LLR = 8.0

# Spoken-challenge recogniser score (Whisper: log-likelihood ratio in nats, the prompt teacher-forced vs
# Whisper's own transcript) from which the words pass: `voiceid eval-challenge --fit-speakers` fitted -11.85
# (clean), -12.22 (G.711 u-law) and -12.16 (A-law) for 1 % false pass on the fit speaker of dev_8k; the
# strictest is the default (docs/challenge.md).
DEFAULT_CHALLENGE_THRESHOLD = -11.85

# Where `make serve` listens unless VOICEID_HOST / VOICEID_PORT (or `--host` / `--port`) say otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

# Model directories under the data dir (unless VOICEID_MODEL_DIR / VOICEID_CM_MODEL_DIR are set).
MODELS_SUBDIR = "models"
ECAPA_SUBDIR = "spkrec-ecapa-voxceleb"
CM_SUBDIR = "aasist"

# The README's table shows this instead of a default that depends on the machine or the checkout.
SHOWN_DEFAULT = "shown_default"


class InferenceBackend(StrEnum):
    """Where the ECAPA network runs (docs/performance.md). Features always come from torch."""

    # The default: torch-bf16 on a CPU with native bf16, else torch; a service with enrolled
    # voiceprints keeps the backend whose model version they carry (voiceid.models.registry).
    AUTO = "auto"
    TORCH = "torch"  # PyTorch eager: the reference implementation and test oracle
    ONNX = "onnx"  # ONNX Runtime, fp32: numerically equivalent, keeps the model version
    ONNX_INT8 = "onnx-int8"  # ONNX Runtime, static int8: a derived model version
    TORCH_BF16 = "torch-bf16"  # traced bf16 on oneDNN: fastest on CPUs with AVX512-BF16; a derived version


class CmRuntime(StrEnum):
    """Where the countermeasure network runs (docs/antispoof.md, "Cost per call")."""

    # The default: torch-bf16 where the model directory holds the built-in AASIST checkpoint and the
    # CPU multiplies bf16 natively, else what the manifest names.
    AUTO = "auto"
    MANIFEST = "manifest"  # the file the manifest names: ONNX Runtime fp32 for the shipped model.onnx (reference)
    TORCH_BF16 = "torch-bf16"  # AASIST's encoder in bf16, compiled by Inductor: 1.6-1.9x faster


class VadBackend(StrEnum):
    TORCH = "torch"  # Silero's TorchScript model
    ONNX = "onnx"  # the same Silero model as shipped ONNX, on ONNX Runtime


_DEFAULT_DATA_DIR = Path(user_data_dir("voiceid", appauthor=False))


def _under_data_dir(*parts: str) -> Callable[[dict[str, Any]], Path]:
    """Default factory of a path inside the (validated) data dir: two installs with their own
    VOICEID_DATA_DIR never share, and so never break, one another's model files."""

    def default(data: dict[str, Any]) -> Path:
        # data_dir is declared (so validated) before the fields that use this; it is missing only
        # when its own value was invalid, and that error is the one pydantic then reports.
        return Path(data.get("data_dir", _DEFAULT_DATA_DIR)).joinpath(*parts)

    return default


def _shown(text: str) -> dict[str, Any]:
    return {SHOWN_DEFAULT: text}


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class FilesSettings(BaseModel):
    """Files: data dir and model directories"""

    data_dir: Path = Field(
        _DEFAULT_DATA_DIR,
        description="Service state: SQLite file, key files, caches and (by default) the model files.",
        json_schema_extra=_shown("`~/.local/share/voiceid` (the user data dir)"),
    )
    model_dir: Path = Field(
        default_factory=_under_data_dir(MODELS_SUBDIR, ECAPA_SUBDIR),
        description="Local copy of SpeechBrain spkrec-ecapa-voxceleb (and its ONNX export); verified by hash "
        "before loading.",
        json_schema_extra=_shown(f"`<data dir>/{MODELS_SUBDIR}/{ECAPA_SUBDIR}`"),
    )
    cm_model_dir: Path = Field(
        default_factory=_under_data_dir(MODELS_SUBDIR, CM_SUBDIR),
        description="Countermeasure model directory (manifest.json + model file); an ONNX drop-in works too.",
        json_schema_extra=_shown(f"`<data dir>/{MODELS_SUBDIR}/{CM_SUBDIR}`"),
    )
    dev_data_dir: Path = Field(
        Path(__file__).resolve().parent.parent.parent / "shared" / "data",
        description="Real speech used by tests, eval and bench (never copied into the repo).",
        json_schema_extra=_shown("`../shared/data` beside the checkout"),
    )


class HttpSettings(BaseModel):
    """HTTP server, connections and request bodies"""

    host: str = Field(DEFAULT_HOST, description="`voiceid serve`: interface to listen on (`--host` overrides).")
    port: int = Field(
        DEFAULT_PORT,
        ge=0,
        le=65535,
        description="`voiceid serve`: TCP port (`--port` and `make serve PORT=` override).",
    )
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="`voiceid serve`: a connection must complete its request headers within this time."
    )
    http_keep_alive_s: int = Field(
        5, ge=1, description="`voiceid serve`: idle keep-alive connections close after this many seconds."
    )
    max_connections: int = Field(
        512,
        ge=8,
        description="`voiceid serve`: open connections (HTTP and WebSocket) per process; above it uvicorn answers 503. "
        "Keep it well below the file-descriptor limit (ulimit -n).",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request line plus headers; larger requests get 431 HEADERS_TOO_LARGE (`voiceid serve` "
        "stops reading them at this size).",
    )
    trusted_proxies: str = Field(
        "",
        description="`voiceid serve`: comma-separated addresses or networks whose X-Forwarded-For / "
        "X-Forwarded-Proto are believed (the client address the throttles count); empty: none.",
    )
    json_max_bytes: int = Field(
        256 * 1024, gt=0, description="Largest JSON or form body; larger ones get 413 before they are read."
    )
    json_body_timeout_s: float = Field(
        5.0, gt=0, description="Time allowed to receive a whole JSON or form body; slower ones get 408."
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After of a 503 when the database cannot be reached.")
    metrics_access: Literal["off", "open", "key"] = Field(
        "key", description="/metrics: off (404), open to anyone, or key (VOICEID_METRICS_KEY or an admin API key)."
    )
    metrics_key: SecretStr | None = Field(
        None, description="Bearer token a Prometheus scraper sends for /metrics when metrics_access is 'key'."
    )


class AudioLimitSettings(BaseModel):
    """Audio uploads: size, duration and decoding bounds"""

    max_upload_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest audio body (bytes); larger ones get 413 PAYLOAD_TOO_LARGE."
    )
    max_audio_s: float = Field(180.0, gt=0, description="Longest accepted utterance (seconds).")
    body_timeout_s: float = Field(
        30.0, gt=0, description="Time allowed to receive a whole audio body; slower uploads get 408."
    )
    max_buffered_upload_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="Audio upload bytes held in memory across all requests of a process; new uploads get "
        "503 OVERLOADED (Retry-After) above it.",
    )
    # Decoding cost is rate x channels x duration, so all three are bounded from the header, before
    # any sample is decoded; the duration limit alone let a 1 MB FLAC ask for 9 GB.
    min_sample_rate: int = Field(4000, ge=1, description="Lowest accepted sample rate (Hz) of any upload.")
    max_sample_rate: int = Field(
        192_000, ge=8000, le=768_000, description="Highest accepted sample rate (Hz); 422 UNSUPPORTED_SAMPLE_RATE."
    )
    max_channels: int = Field(2, ge=1, le=64, description="Most channels in an upload; 422 TOO_MANY_CHANNELS.")
    max_decoded_samples: int = Field(
        12_000_000,
        ge=16_000,
        description="Most decoded samples (frames x channels) in one upload, about 48 MB as float32; "
        "413 DECODED_AUDIO_TOO_LARGE.",
    )


class SpeechSettings(BaseModel):
    """Speech detection (VAD) and the front end"""

    vad_backend: VadBackend = Field(
        VadBackend.ONNX,
        description="Silero VAD as TorchScript, or silero-vad's sequence .onnx on ONNX Runtime "
        "(the same segments on the dev set for a sixth of the CPU time).",
    )
    min_net_speech_s: float = Field(
        1.0, gt=0, description="Below this much detected speech no embedding is attempted (AUDIO_TOO_SHORT)."
    )
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero speech probability from which a frame is speech.")
    vad_min_silence_ms: int = Field(300, ge=0, description="Silence (ms) that ends a speech segment.")
    vad_speech_pad_ms: int = Field(100, ge=0, description="Padding (ms) kept on each side of a speech segment.")
    vad_min_speech_ms: int = Field(250, ge=0, description="Speech segments shorter than this (ms) are dropped.")
    vad_max_pause_s: float = Field(
        1.0, ge=0, description="Non-speech stretches longer than this are shortened to it before embedding."
    )


class InferenceSettings(BaseModel):
    """Model and inference"""

    inference_backend: InferenceBackend = Field(
        InferenceBackend.AUTO,
        description="auto | torch | torch-bf16 | onnx | onnx-int8. auto: torch-bf16 where the CPU has native bf16 "
        "(2x faster), else torch, and in a service the backend most enrolled voiceprints were made with. "
        "torch-bf16 and onnx-int8 vectors carry a derived model version; onnx* need `voiceid models export`.",
    )
    # One intra-op thread per inference: requests run in parallel on the worker pool instead, which
    # gives the most verifications per core (silero-vad also pins torch to one thread on import).
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads per inference; 0 = torch's default.")
    inference_workers: int = Field(2, ge=1, description="Worker threads for inference in the service.")
    inference_queue: int = Field(
        8, ge=0, description="Requests allowed to wait for a worker before the API answers 503."
    )
    embed_batch_seconds: float = Field(
        120.0, gt=0, description="Max seconds of (padded) audio per batch when embedding many files."
    )


class StorageSettings(BaseModel):
    """Storage, encryption and the key store"""

    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite file in data_dir.",
    )
    encryption_key: SecretStr | None = Field(
        None,
        description="Base64 (url-safe) 32-byte AES key for embeddings at rest; default: key file in data_dir.",
    )
    encryption_previous_keys: SecretStr | None = Field(
        None, description="Comma-separated older master keys that may still unwrap data keys (during a rotation)."
    )
    keystore_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the data-key store (per-speaker keys, wrapped by the master key); default: "
        "keystore.db in data_dir. Keep it out of database backups: that is what makes erasure final.",
    )
    keystore_busy_timeout_s: float = Field(30.0, gt=0, description="How long a key-store write waits for readers.")
    keystore_checkpoint_after_erase: bool = Field(
        False,
        description="PostgreSQL key store: CHECKPOINT after each erasure so WAL holding destroyed keys can be "
        "removed at once (needs superuser or pg_checkpoint; docs/security.md).",
    )
    keystore_cache_keys: int = Field(10_000, ge=0, description="Unwrapped data keys kept in memory per process.")
    keystore_cache_s: float = Field(300.0, ge=0, description="How long an unwrapped data key stays in memory.")


class AccessSettings(BaseModel):
    """API keys, authentication and review sign-in"""

    admin_key: SecretStr | None = Field(None, description="Bootstraps an admin API key at start-up.")
    admin_key_min_bits: float = Field(
        128.0, ge=0, description="Refuse to start when VOICEID_ADMIN_KEY is estimated weaker than this."
    )
    api_key_touch_interval_s: float = Field(
        60.0, ge=0, description="An API key's last-used time is written at most this often."
    )
    auth_fail_limit: int = Field(
        10, ge=1, description="Failed authentications per client address per window before it is throttled."
    )
    auth_fail_window_s: float = Field(300.0, gt=0, description="The failed-authentication window (seconds).")
    auth_throttle_clients: int = Field(
        10_000, ge=1, description="Client addresses tracked for throttling (LRU; bounds the memory used)."
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Signs review-page session cookies; default: a key file in data_dir (SQLite only: with "
        "PostgreSQL every replica must share it, so it is required).",
    )
    review_session_max_age_s: int = Field(8 * 3600, gt=0, description="Review-page sign-in lifetime.")


class EnrolmentSettings(BaseModel):
    """Enrolment"""

    enrol_min_speech_s: float = Field(20.0, gt=0, description="Net speech needed before a speaker is ENROLLED.")
    # Enrolled on a good line, verified over the phone: the voiceprint of the enrolment audio's G.711 view
    # matches phone calls better (dev EER 4.06 -> 2.71 %). On by default: a small deployment scores the
    # raw cosine (verify/calibration.py regimes), and a wideband voiceprint against a G.711 call there
    # accepted 3.8 % of genuine dev callers; against the phone view, 69.5 % (the G.711 -> G.711 figure).
    # The population cohort serves phone views to phone calls too (docs/decision-policy.md, cross-channel).
    enrol_phone_view: bool = Field(
        True,
        description="Also embed wideband enrolment audio as a G.711 line carries it and score phone calls "
        "against that view's voiceprint (one more inference per wideband enrolment utterance).",
    )


class DecisionSettings(BaseModel):
    """Decision policy and calibration"""

    # The calibration already discounts short probes (their LLRs stay near 0 unless the evidence is
    # strong), so the floor is the embedding floor: a higher one turns genuine short calls away for
    # nothing (on the dev set 59 % of single utterances have < 3 s of net speech).
    verify_min_speech_s: float = Field(
        1.0, gt=0, description="Below this net speech a verification is INCONCLUSIVE whatever it scored."
    )
    # One policy stated in error rates; the calibration turns it into LLR thresholds per channel.
    target_fmr: float = Field(
        0.001, gt=0, lt=0.5, description="False-match rate the ACCEPT threshold is set for (in every net-speech band)."
    )
    target_fnmr: float = Field(
        0.01, gt=0, lt=0.5, description="Share of genuine callers the REJECT threshold may turn away."
    )
    # The one voice retry the IVR may give an INCONCLUSIVE caller (docs/decision-policy.md, "What the IVR
    # does with INCONCLUSIVE"): a second try is a second chance for an impostor too, so it is decided at
    # a stricter false-match rate; at the same thresholds the dev set's impostor ACCEPT rose from 0.084 to
    # 0.105 % (wideband) and 0.096 to 0.133 % (G.711) over both tries (`voiceid eval --second-chance`).
    retry_fmr_factor: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A retry (?retry_of=) is decided at the ACCEPT threshold for VOICEID_TARGET_FMR times this.",
    )
    retry_window_s: float = Field(
        300.0, gt=0, le=3600, description="A retry must reference an INCONCLUSIVE verification at most this old."
    )
    # Thresholds normally come from the channel's calibration (voiceid/verify/data/calibration.json,
    # set for a target false-match rate). Setting either variable pins both for every channel.
    # The defaults below apply only with VOICEID_SCORE_NORM=none and no calibration (raw cosine).
    accept_threshold: float = Field(
        DEFAULT_ACCEPT_THRESHOLD,
        description="Setting it (or the reject threshold) pins both for every channel, on the LLR scale; unset, "
        "they come from the calibration and the targets (the default is the raw cosine's, with no calibration).",
    )
    reject_threshold: float = Field(
        DEFAULT_REJECT_THRESHOLD, description="See VOICEID_ACCEPT_THRESHOLD; must not exceed it."
    )
    score_norm: Literal["none", "s-norm", "as-norm", "centre"] = Field(
        "centre",
        description="Score normalisation once the enrolled population is large enough for it to pay (below that, "
        "the raw cosine): centre = the cosine centred on the enrolled voiceprints' mean; as-norm / s-norm = "
        "against the cohort's score statistics (shipped calibrations from 100 callers); none = raw cosine always.",
    )
    score_top_n: int = Field(50, ge=1, description="AS-norm: cohort scores kept per side.")
    calibration_file: Path | None = Field(
        None, description="calibration.json from `voiceid calibrate`; default: the one shipped in the package."
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Self:
        if self.reject_threshold > self.accept_threshold:
            raise ValueError("reject_threshold must not exceed accept_threshold")
        return self


class LockoutSettings(BaseModel):
    """Lockout and attempt rate limits"""

    lockout_rejects: int = Field(
        5, ge=1, description="Failed attempts in a row (REJECT = 1, weighted others below) that lock a speaker."
    )
    # No free retries: an attacker who hill-climbs a synthetic voice mostly produces INCONCLUSIVE and
    # too-short attempts, so they count too, at a weight (a genuine caller's bad line should not lock
    # them out as fast as outright rejections).
    lockout_inconclusive_weight: float = Field(
        0.5, ge=0, le=1, description="Lockout weight of an INCONCLUSIVE attempt (REJECT counts 1)."
    )
    lockout_unusable_weight: float = Field(
        0.5, ge=0, le=1, description="Lockout weight of an attempt refused for too little or no speech."
    )
    lockout_window_s: float = Field(86400.0, gt=0, description="How long a lockout lasts unless an admin unlocks.")
    attempt_rate_limit: int = Field(
        10, ge=1, description="Verification attempts allowed per speaker per rate window; more get 429."
    )
    attempt_rate_window_s: float = Field(3600.0, gt=0, description="The per-speaker attempt rate window.")


class CohortSettings(BaseModel):
    """Cohort and self-calibration"""

    cohort_source: Literal["population", "builtin"] = Field(
        "population",
        description="Normalise against the operator's own enrolled voiceprints (population), or never (builtin: "
        "with the shipped calibrations every call is then decided in the raw-cosine regime, as a deployment's "
        "first callers are).",
    )
    cohort_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Fixed cohort size: up to this many enrolled voiceprints (a stable sample), topped up from the "
        "shipped cohort while fewer are enrolled.",
    )
    cohort_refresh_interval_s: float = Field(
        300.0, gt=0, description="How often the cohort snapshot is refreshed from the enrolled population."
    )
    # Self-calibration (verify/selfcal.py): the calibration corrected on the population's own
    # non-target trials (enrolled voiceprints against other identities' enrolment audio), a worker job.
    self_calibration: bool = Field(
        True, description="Correct the calibration on the enrolled population's own non-target trials."
    )
    selfcal_interval_s: float = Field(300.0, gt=0, description="How often the self-calibration is refitted.")
    selfcal_max_speakers: int = Field(
        2000, ge=2, le=100_000, description="Enrolled identities (a stable sample) whose audio the fit reads."
    )
    selfcal_probes_per_speaker: int = Field(
        3, ge=1, le=50, description="Enrolment utterances per identity in the fit (no one weighs more)."
    )
    selfcal_max_trials: int = Field(
        20_000, ge=100, le=1_000_000, description="Non-target trials scored per channel per fit (bounds its cost)."
    )
    selfcal_min_trials: int = Field(30, ge=1, description="Fewer non-target trials in a band: no estimate there.")
    selfcal_tail_errors: float = Field(
        10.0, ge=1, description="Impostor pairs expected above the threshold before a band's own tail is read."
    )
    selfcal_prior_pairs: int = Field(
        200, ge=0, description="Blend of the mean estimate with the shipped calibration: n pairs weigh n / (n + this)."
    )
    selfcal_max_lower: float = Field(
        0.5, ge=0, le=5, description="Nats: the most the self-calibration may lower the accept threshold (a floor)."
    )
    selfcal_max_raise: float = Field(4.0, ge=0, le=20, description="Nats: the most it may raise it.")
    selfcal_min_speakers_to_lower: int = Field(
        30, ge=2, description="Distinct identities the fit must rest on before it may lower the threshold at all."
    )
    selfcal_same_person_cosine: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Pairs of enrolled voiceprints at least this similar may be one person (a duplicate the "
        "checks missed) and are left out of the non-target trials.",
    )
    # Voiceprints that follow the caller (enrolment/adaptation.py, issue 19 item 3): a call that ends ACCEPT
    # with a margin and passed every check joins the voiceprint of its channel, bounded and anchored to the
    # enrolment voiceprint. bench/adaptation.py on dev (G.711, all speakers enrolled): genuine ACCEPT on
    # later calls 77.5 -> 83.3 %, impostor ACCEPT 0.098 -> 0.101 %; a look-alike whose calls were all
    # taken as accepted passed on 30 instead of 22 of 315 later calls (the floor stops 94.5 % of theirs;
    # README, "Voiceprints that follow the caller"). Measured and safe by those figures: on.
    adaptation: bool = Field(
        True, description="Adapt each channel's voiceprint with high-confidence accepted calls (bounded, reversible)."
    )
    adaptation_max_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="The most the kept calls together weigh in an adapted voiceprint (the rest: "
        "the enrolment voiceprint).",
    )
    adaptation_call_share: float = Field(
        0.2, gt=0, le=1, description="Each kept call's weight in the adapted voiceprint until the cap is reached."
    )
    adaptation_max_calls: int = Field(5, ge=1, le=100, description="Calls kept per channel; the oldest goes first.")
    # Dev G.711: confidently accepted genuine calls sit at cosine 0.59 (5th percentile) / 0.74 (median) to
    # the enrolment voiceprint; the nearest other speaker's calls at 0.51 (median) / 0.65 (95th percentile).
    adaptation_min_cosine: float = Field(
        0.65,
        ge=0,
        le=1,
        description="A call less similar (raw cosine) than this to the enrolment voiceprint never adapts it.",
    )
    adaptation_llr_margin: float = Field(
        1.0, ge=0, description="Nats above the accept threshold a call's LLR must reach to adapt the voiceprint."
    )
    adaptation_min_speech_s: float = Field(
        2.0, ge=0, description="Net speech a call must have to adapt the voiceprint."
    )


class CountermeasureSettings(BaseModel):
    """Presentation-attack detection: countermeasure and replay (docs/antispoof.md)"""

    cm_enabled: bool = Field(True, description="Run the spoofing countermeasure beside the embedding on every call.")
    cm_max_windows: int = Field(
        4, ge=1, le=32, description="4-s windows the countermeasure scores per call at most (bounds its cost)."
    )
    cm_runtime: CmRuntime = Field(
        CmRuntime.AUTO,
        description="Countermeasure runtime: auto (torch-bf16 where it can run, else the manifest's), manifest, "
        "torch-bf16.",
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
        0.01, gt=0, lt=0.5, description="`voiceid calibrate-pad` default: share of genuine callers flagged."
    )
    cm_enrol_max_flagged: int = Field(
        3,
        ge=1,
        le=100,
        description="Flagged files an enrolment in doubt keeps out of its voiceprint before it is built from all "
        "its audio and held for an analyst (review item SPOOF_SUSPECTED).",
    )
    replay_enabled: bool = Field(True, description="Fingerprint audio and flag a probe that replays earlier audio.")
    replay_threshold: float = Field(
        0.035, gt=0, le=1, description="Share of a probe's landmark hashes that must line up with one stored recording."
    )
    replay_max_fingerprints: int = Field(
        200, ge=1, description="Stored fingerprints compared per speaker at most (newest first)."
    )


class ChallengeSettings(BaseModel):
    """Spoken challenges: prompted digits (docs/challenge.md)"""

    challenge_policy: Literal["off", "on-risk", "always"] = Field(
        "on-risk",
        description="When a verification without a challenge is INCONCLUSIVE CHALLENGE_REQUIRED: never, when a "
        "would-be ACCEPT is risky (countermeasure near its threshold, linked voice), or always.",
    )
    challenge_cm_band: float = Field(
        0.5,
        ge=0,
        le=50,
        description="on-risk: a countermeasure score less than this (nats) above its channel threshold is risky.",
    )
    challenge_digits: int = Field(6, ge=4, le=12, description="Digits in a prompt.")
    challenge_ttl_s: float = Field(
        120.0, gt=0, le=3600, description="A challenge expires this long after it is issued (single use before)."
    )
    challenge_max_open: int = Field(
        3, ge=1, le=100, description="Open (unused, unexpired) challenges per speaker; more are refused (429)."
    )
    challenge_lockout_weight: float = Field(
        1.0, ge=0, le=100, description="Lockout weight of a failed challenge (a REJECT counts 1)."
    )
    challenge_threshold: float = Field(
        DEFAULT_CHALLENGE_THRESHOLD,
        ge=-50,
        le=50,
        description=(
            "Recogniser score (log-likelihood ratio of the prompt vs the recogniser's own transcript, nats) "
            "from which the words match the prompt."
        ),
    )


class FraudSettings(BaseModel):
    """Fraud workspace: watchlist, duplicates, linked calls (docs/fraud.md)"""

    # Flag by default: a hit only adds WATCHLIST_MATCH; with W pooled entries about W x 5e-4 of genuine
    # calls hit falsely at the default LLR (docs/fraud.md), too many to reject outright without an analyst.
    watchlist_action: Literal["reject", "flag"] = Field(
        "flag", description="A watchlist hit forces REJECT (and refuses enrolment), or only flags."
    )
    duplicate_action: Literal["review", "refuse"] = Field(
        "review", description="A duplicate enrolment is held as REVIEW_REQUIRED, or refused."
    )
    # Every fraud comparison (watchlist, duplicates, linked calls) is a natural-log likelihood ratio
    # from the pair's channel calibration (voiceid/fraud/scale.py); thresholds live on that scale.
    watchlist_llr_threshold: float = Field(
        DEFAULT_WATCHLIST_LLR, ge=-50, le=50, description="LLR probe vs watchlist voice counted as a hit."
    )
    duplicate_llr_threshold: float = Field(
        DEFAULT_DUPLICATE_LLR, ge=-50, le=50, description="LLR between two voiceprints held as duplicates."
    )
    link_llr_threshold: float = Field(
        DEFAULT_LINK_LLR, ge=-50, le=50, description="LLR between two calls shown as linked (same voice)."
    )
    link_pooled_llr_threshold: float | None = Field(
        DEFAULT_LINK_POOLED_LLR,
        ge=-50,
        le=50,
        description="Second pass: calls scoring this LLR against the call pooled with its links are linked too "
        "(unset: no second pass).",
    )
    link_alert_identities: int = Field(
        3, ge=2, le=100, description="Alert when one voice is heard on this many identities (the call's included)..."
    )
    link_alert_days: float = Field(7.0, gt=0, le=366, description="...within this many days.")
    link_max_attempts: int = Field(
        200_000, ge=1, description="Most retained attempts one linked-calls search compares (newest first)."
    )
    watchlist_max_samples: int = Field(
        50, ge=1, le=10_000, description="Most flagged calls pooled into one watchlist voice."
    )


class SearchSettings(BaseModel):
    """1:N search and persisted index snapshots"""

    search_exact_max: int = Field(
        100_000, ge=0, description="Above this many vectors 1:N search uses the faiss HNSW index, not a matmul."
    )
    index_snapshot_interval_s: float = Field(
        600.0,
        ge=1,
        le=86_400,
        description="How often the worker writes a new index snapshot where the population changed; also the "
        "longest an erased voice stays in the newest persisted snapshot.",
    )
    index_snapshot_min_vectors: int | None = Field(
        None,
        ge=0,
        description="Snapshot an index (one kind, one model version) only from this many live vectors; "
        "default: VOICEID_SEARCH_EXACT_MAX (below it a replica's full load needs no graph build).",
    )
    index_snapshot_chunk_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Plaintext bytes per sealed snapshot chunk (one database row each).",
    )
    index_snapshot_load: bool = Field(
        True,
        description="On a cold start (or behind the change-feed horizon) a replica loads the newest complete "
        "snapshot and applies the feed on top, instead of decrypting every vector and building the graph.",
    )


class RetentionSettings(BaseModel):
    """Privacy and retention"""

    attempt_retention_days: float = Field(
        30.0, gt=0, description="How long a verification's encrypted embedding is kept for analysts."
    )
    purge_interval_s: float = Field(3600.0, gt=0, description="How often the server purges expired embeddings.")
    voiceprint_retention_days: float = Field(
        3 * 365.0,
        gt=0,
        description="A voiceprint unused (no scored verification) this long is erased and the speaker EXPIRED. "
        "Amazon Connect Voice ID: 3 years; HMRC: 6 years from last use.",
    )


class StreamSettings(BaseModel):
    """Telephony streams: Twilio and AudioSocket (docs/telephony.md)"""

    stream_max_s: float = Field(
        30.0, gt=0, description="A verification stream is decided (an enrolment stream cut) after this much audio."
    )
    stream_interim_s: float = Field(
        1.0, gt=0, description="New audio (seconds) between two interim scores of a stream."
    )
    stream_start_timeout_s: float = Field(
        5.0, gt=0, description="A Twilio stream must send 'start' (an AudioSocket call its UUID) within this time."
    )
    stream_idle_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for the next message of a call; then it is decided or abandoned."
    )
    stream_max_wall_s: float = Field(
        300.0, gt=0, description="Longest a telephony call may stay connected, however slowly it sends audio."
    )
    max_streams: int = Field(
        64, ge=1, description="Concurrent telephony calls per process (Twilio + AudioSocket); more are refused."
    )
    # One Asterisk host (or a few Twilio egress addresses) carries every call, so the per-address
    # cap must allow a burst of call set-ups; waiting lasts until the first message (milliseconds
    # for a real client, VOICEID_STREAM_START_TIMEOUT_S at most for an idle one).
    preauth_per_address: int = Field(
        32, ge=1, description="Telephony connections (Twilio, AudioSocket) from one address waiting to authenticate."
    )
    max_preauth_connections: int = Field(
        256,
        ge=1,
        description="Telephony connections waiting to authenticate, all addresses; they hold no stream slot, and "
        "each waits at most VOICEID_STREAM_START_TIMEOUT_S.",
    )
    audiosocket_host: str = Field("127.0.0.1", description="Interface of the Asterisk AudioSocket server.")
    audiosocket_port: int = Field(9092, ge=0, le=65535, description="TCP port of the AudioSocket server.")


class SipSettings(BaseModel):
    """Telephony: SIP user agent and SIPREC recording server (`voiceid telephony sip`)"""

    sip_host: str = Field("127.0.0.1", description="Interface of the SIP server (UDP and TCP).")
    sip_port: int = Field(5060, ge=0, le=65535, description="SIP port (UDP and TCP).")
    sip_media_address: str | None = Field(
        None, description="Address put in SDP answers for RTP; default: the SIP interface (or the route to the peer)."
    )
    sip_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Comma-separated CIDRs of the sources (SBC, proxy, IVR) allowed to send SIP; others get 403.",
    )
    sip_max_dialogs: int = Field(64, ge=1, description="Concurrent SIP/SIPREC calls; more get 503 with Retry-After.")
    sip_max_rtp_sessions: int = Field(128, ge=1, description="Concurrent RTP streams (a SIPREC call has two or more).")
    sip_max_media_streams: int = Field(4, ge=1, description="Most m= lines taken in one offer; more get 488.")
    sip_invite_rate: float = Field(20.0, gt=0, description="New INVITEs a second (token bucket); a flood gets 503.")
    sip_invite_burst: int = Field(40, ge=1, description="INVITEs accepted at once before the rate applies.")
    sip_max_message_bytes: int = Field(
        32768, ge=1024, description="Largest SIP message; larger ones get 413 (a TCP peer is disconnected)."
    )
    sip_max_metadata_bytes: int = Field(16384, ge=256, description="Largest SIPREC metadata XML; larger gets 413.")
    sip_max_xml_depth: int = Field(16, ge=4, description="Deepest nesting of SIPREC metadata XML; deeper gets 400.")
    sip_rtp_port_min: int = Field(0, ge=0, le=65535, description="RTP port range start (0: the OS chooses).")
    sip_rtp_port_max: int = Field(0, ge=0, le=65535, description="RTP port range end (inclusive).")
    sip_rtp_timeout_s: float = Field(
        5.0, gt=0, description="A call whose caller stream sends no RTP for this long (not on hold) is ended."
    )
    sip_jitter_ms: int = Field(60, ge=0, le=1000, description="RTP jitter buffer depth, by RTP timestamp.")
    sip_max_gap_s: float = Field(
        2.0, gt=0, description="An RTP timestamp jump larger than this is a new time base, not silence to fill."
    )

    @field_validator("sip_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        return _comma_separated(value)


class ReplicaSettings(BaseModel):
    """Worker, replicas and the change feed (docs/deploy.md)"""

    upgrade_on_start: bool = Field(
        True,
        description="`serve` runs `db upgrade` (migrations, admin-key bootstrap; under a database lock, so "
        "replicas starting together are safe). Set false where a `voiceid db upgrade` job runs first.",
    )
    run_jobs_in_process: bool | None = Field(
        None,
        description="`serve` also runs the singleton jobs (retention, webhook outbox, ...); default: only on "
        "SQLite. With PostgreSQL run `voiceid worker` instead.",
    )
    change_poll_s: float = Field(
        0.25,
        ge=0,
        le=60,
        description="How often a replica checks the database revision for voiceprint/watchlist changes made by "
        "other replicas: the most an erasure elsewhere takes to leave this replica's caches (plus one query).",
    )
    change_feed_retention_s: float = Field(
        86400.0, gt=0, description="Change-feed rows older than this are pruned by the worker."
    )
    job_lock_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait for the database lock of `db upgrade` statements (PostgreSQL)."
    )


class WebhookSettings(BaseModel):
    """Webhooks: call outcomes through the outbox"""

    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names (or *.domain) webhooks may be sent to; empty = webhooks off.",
    )
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs a webhook host may resolve into although they are private, loopback "
        "or link-local (refused otherwise).",
    )
    webhook_allow_http: bool = Field(False, description="Accept plain http:// webhook URLs (https only otherwise).")
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key signing webhook payloads; required when webhooks are on."
    )
    webhook_timeout_s: float = Field(3.0, gt=0, description="Timeout of the call-outcome webhook POST.")
    webhook_max_attempts: int = Field(8, ge=1, le=100, description="Deliveries tried before a webhook is FAILED.")
    webhook_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles on each further failure.")
    webhook_backoff_max_s: float = Field(600.0, gt=0, description="Longest delay between two delivery attempts.")
    webhook_poll_s: float = Field(1.0, gt=0, le=3600, description="How often the worker looks for due webhooks.")
    webhook_batch: int = Field(50, ge=1, le=10_000, description="Webhooks one worker claims per poll.")
    webhook_lease_s: float = Field(
        60.0, gt=0, description="A claimed webhook is retried by another worker after this long (crash recovery)."
    )

    @field_validator("webhook_allowed_hosts", "webhook_allowed_networks", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _comma_separated(value)


# Reading order of the sections (the README table's order). FilesSettings comes first: the model
# directories' defaults are computed from the already-validated data_dir.
SECTIONS: tuple[type[BaseModel], ...] = (
    FilesSettings,
    HttpSettings,
    AudioLimitSettings,
    SpeechSettings,
    InferenceSettings,
    StorageSettings,
    AccessSettings,
    EnrolmentSettings,
    DecisionSettings,
    LockoutSettings,
    CohortSettings,
    CountermeasureSettings,
    ChallengeSettings,
    FraudSettings,
    SearchSettings,
    RetentionSettings,
    StreamSettings,
    SipSettings,
    ReplicaSettings,
    WebhookSettings,
)


# pydantic collects inherited fields from the last base to the first, so the bases are listed in
# the reverse of SECTIONS: the fields' order (data_dir before the model dirs) is then reading order.
class Settings(
    WebhookSettings,
    ReplicaSettings,
    SipSettings,
    StreamSettings,
    RetentionSettings,
    SearchSettings,
    FraudSettings,
    ChallengeSettings,
    CountermeasureSettings,
    CohortSettings,
    LockoutSettings,
    DecisionSettings,
    EnrolmentSettings,
    AccessSettings,
    StorageSettings,
    InferenceSettings,
    SpeechSettings,
    AudioLimitSettings,
    HttpSettings,
    FilesSettings,
    BaseSettings,
):
    """Every VOICEID_* setting (flat: `VOICEID_<FIELD NAME>`), from the environment."""

    model_config = SettingsConfigDict(env_prefix="VOICEID_", env_file=None, extra="ignore")

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def snapshot_min_vectors(self) -> int:
        """The live-vector count from which the worker snapshots an index."""
        return self.search_exact_max if self.index_snapshot_min_vectors is None else self.index_snapshot_min_vectors

    @property
    def jobs_in_process(self) -> bool:
        return self.is_sqlite if self.run_jobs_in_process is None else self.run_jobs_in_process

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
