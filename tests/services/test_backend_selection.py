"""`VOICEID_INFERENCE_BACKEND=auto`: the fastest backend for a fresh deployment, the enrolled one after."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voiceid.config import InferenceBackend
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.backends.bf16 import bf16_version
from voiceid.models.files import MODEL_VERSION
from voiceid.models.registry import choose_backend, resolve_service_backend
from voiceid.services.root import VoiceIdService
from voiceid.storage import repositories as repo
from voiceid.testkit.api import Api
from voiceid.testkit.engines import unit

BF16 = bf16_version(MODEL_VERSION)
VERSIONS = {InferenceBackend.TORCH: MODEL_VERSION, InferenceBackend.TORCH_BF16: BF16}


def test_an_explicit_backend_always_wins() -> None:
    for backend in (InferenceBackend.TORCH, InferenceBackend.ONNX, InferenceBackend.TORCH_BF16):
        assert choose_backend(backend, {BF16: 5}, VERSIONS, has_native_bf16=False).backend is backend


def test_a_fresh_deployment_gets_the_cpus_fastest_backend() -> None:
    assert choose_backend(InferenceBackend.AUTO, {}, VERSIONS, True).backend is InferenceBackend.TORCH_BF16
    assert choose_backend(InferenceBackend.AUTO, {}, VERSIONS, False).backend is InferenceBackend.TORCH
    # Voiceprints of a model auto never runs (an int8 export, another checkpoint) do not pin it.
    other = {f"{MODEL_VERSION}-int8-abc": 40, "ecapa-voxceleb-000000000000": 3}
    assert choose_backend(InferenceBackend.AUTO, other, VERSIONS, True).backend is InferenceBackend.TORCH_BF16


def test_auto_keeps_the_backend_most_voiceprints_were_enrolled_with() -> None:
    # An upgrade on a bf16 CPU must not turn fp32-enrolled callers into NOT_ENROLLED.
    choice = choose_backend(InferenceBackend.AUTO, {MODEL_VERSION: 7, BF16: 2}, VERSIONS, True)
    assert choice.backend is InferenceBackend.TORCH
    assert "7 enrolled voiceprints" in choice.reason
    assert choose_backend(InferenceBackend.AUTO, {MODEL_VERSION: 2, BF16: 7}, VERSIONS, True).backend is (
        InferenceBackend.TORCH_BF16
    )
    # A tie goes to the faster one.
    assert choose_backend(InferenceBackend.AUTO, {MODEL_VERSION: 3, BF16: 3}, VERSIONS, True).backend is (
        InferenceBackend.TORCH_BF16
    )


def test_bf16_voiceprints_on_a_cpu_without_bf16_refuse_to_start_with_the_way_out() -> None:
    with pytest.raises(VoiceIdError) as caught:
        choose_backend(InferenceBackend.AUTO, {BF16: 9}, VERSIONS, has_native_bf16=False)
    assert caught.value.code is ErrorCode.CONFIGURATION_ERROR
    assert "VOICEID_INFERENCE_BACKEND=torch" in caught.value.message


@pytest.mark.model
def test_a_service_with_fp32_voiceprints_starts_on_torch(make_api: Callable[..., Api]) -> None:
    api = make_api()
    api.seed_voiceprint("fp32-caller", unit(1), model_version=MODEL_VERSION)
    with api.service.db.transaction() as session:
        counts = repo.voiceprint_versions(session)
    assert counts == {MODEL_VERSION: 1}
    settings = api.service.settings.model_copy(update={"inference_backend": InferenceBackend.AUTO})
    assert resolve_service_backend(InferenceBackend.AUTO, settings.model_dir, counts).backend is InferenceBackend.TORCH
    # The whole start-up path: the service's engine produces the enrolled callers' model version.
    service = VoiceIdService.from_settings(settings)
    try:
        assert service.settings.inference_backend is InferenceBackend.TORCH
        assert service.engine.model_version == MODEL_VERSION
    finally:
        service.close()
