"""The embedding factory: which backend runs (`VOICEID_INFERENCE_BACKEND`), and building it once per process.

What `auto` (the default) means on this CPU and for this database:

`torch-bf16` runs the network at twice the fp32 rate where the CPU multiplies bf16 natively
(docs/performance.md), but its vectors carry a derived model version, and the service never compares
a voiceprint with a probe of another version. So `auto` is sticky: a service whose database already
holds voiceprints keeps the backend that made most of them (an upgrade never turns enrolled callers
into NOT_ENROLLED); only a deployment with nothing enrolled yet takes the fastest backend the CPU
runs natively. An explicit setting always wins.

The choice itself is pure (`choose_backend`); `resolve_service_backend` feeds it the database's
counts once at start-up, and command-line tools without a database use `concrete_backend`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from voiceid.config import InferenceBackend
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.backends.bf16 import Bf16Embedder, bf16_version, cpu_has_native_bf16
from voiceid.models.embedder import Embedder
from voiceid.models.files import MODEL_VERSION, REQUIRED_FILES, verify_model_dir

log = logging.getLogger(__name__)

# What `auto` may pick: the two backends that need no export step and no operator choice of accuracy.
AUTO_CANDIDATES = (InferenceBackend.TORCH_BF16, InferenceBackend.TORCH)


def native_bf16() -> bool:
    return cpu_has_native_bf16()


def fastest_backend(has_native_bf16: bool) -> InferenceBackend:
    return InferenceBackend.TORCH_BF16 if has_native_bf16 else InferenceBackend.TORCH


def concrete_backend(backend: InferenceBackend) -> InferenceBackend:
    """`auto` without a database (evaluation, cohort and calibration tools): the CPU's fastest."""
    return fastest_backend(native_bf16()) if backend is InferenceBackend.AUTO else backend


@dataclass(frozen=True)
class BackendChoice:
    backend: InferenceBackend
    reason: str


def choose_backend(
    requested: InferenceBackend,
    enrolled: Mapping[str, int],
    versions: Mapping[InferenceBackend, str],
    has_native_bf16: bool,
) -> BackendChoice:
    """The backend a service runs: `requested` unless it is `auto`; then the candidate whose model
    version the most enrolled voiceprints carry (`enrolled`: version -> count; `versions`: what each
    candidate produces), or the CPU's fastest when none is enrolled under a candidate's version."""
    if requested is not InferenceBackend.AUTO:
        return BackendChoice(requested, "set by VOICEID_INFERENCE_BACKEND")
    fastest = fastest_backend(has_native_bf16)
    by_version = {versions[b]: b for b in AUTO_CANDIDATES}
    known = {v: n for v, n in enrolled.items() if v in by_version and n > 0}
    if not known:
        return BackendChoice(fastest, "no voiceprint enrolled under a backend auto can run: the CPU's fastest")
    # Most voiceprints first; on a tie the faster backend.
    version = max(known, key=lambda v: (known[v], by_version[v] is fastest))
    backend = by_version[version]
    if backend is InferenceBackend.TORCH_BF16 and not has_native_bf16:
        raise VoiceIdError(
            ErrorCode.CONFIGURATION_ERROR,
            f"{known[version]} enrolled voiceprints were made with torch-bf16, which this CPU cannot run natively "
            "(no AVX512-BF16 or AMX): run on such a CPU, or set VOICEID_INFERENCE_BACKEND=torch to serve anyway "
            "(those callers then answer NOT_ENROLLED until they enrol again)",
        )
    return BackendChoice(backend, f"{known[version]} enrolled voiceprints carry {version}")


def candidate_versions(model_dir: Path) -> dict[InferenceBackend, str]:
    return {b: backend_model_version(model_dir, b) for b in AUTO_CANDIDATES}


def resolve_service_backend(requested: InferenceBackend, model_dir: Path, enrolled: Mapping[str, int]) -> BackendChoice:
    choice = choose_backend(requested, enrolled, candidate_versions(model_dir), native_bf16())
    log.info("inference backend %s (%s)", choice.backend, choice.reason)
    return choice


_shared: dict[tuple[Path, int, InferenceBackend], Embedder] = {}
_shared_lock = threading.Lock()


def load_embedder(model_dir: Path, threads: int = 0, backend: InferenceBackend = InferenceBackend.TORCH) -> Embedder:
    """An embedder on the chosen backend; torch is the reference the others are tested against."""
    backend = concrete_backend(backend)
    if backend is InferenceBackend.TORCH:
        return Embedder.from_dir(model_dir, threads=threads)
    if backend is InferenceBackend.TORCH_BF16:
        return Bf16Embedder(verify_model_dir(model_dir, REQUIRED_FILES), threads=threads)
    # ONNX Runtime is imported only by a process that runs it.
    from voiceid.models.backends.onnx import OnnxEmbedder
    from voiceid.models.onnx_export import OnnxPrecision

    precision = OnnxPrecision.INT8 if backend is InferenceBackend.ONNX_INT8 else OnnxPrecision.FP32
    return OnnxEmbedder(verify_model_dir(model_dir, REQUIRED_FILES), precision, threads=threads)


def backend_model_version(model_dir: Path, backend: InferenceBackend) -> str:
    """The model version `backend`'s vectors will carry, without loading any network."""
    backend = concrete_backend(backend)
    if backend is InferenceBackend.TORCH:
        return MODEL_VERSION
    if backend is InferenceBackend.TORCH_BF16:
        return bf16_version(MODEL_VERSION)
    from voiceid.models.onnx_export import OnnxPrecision, load_exported

    precision = OnnxPrecision.INT8 if backend is InferenceBackend.ONNX_INT8 else OnnxPrecision.FP32
    return load_exported(verify_model_dir(model_dir, REQUIRED_FILES), precision).model_version


def shared_embedder(model_dir: Path, threads: int = 0, backend: InferenceBackend = InferenceBackend.TORCH) -> Embedder:
    """The process-wide embedder for a model dir and backend: the model is loaded once and reused."""
    key = (model_dir.resolve(), threads, concrete_backend(backend))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = load_embedder(model_dir, threads, backend)
        return _shared[key]
