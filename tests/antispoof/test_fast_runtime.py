"""The countermeasure's bf16 runtime (voiceid.antispoof.fast) against the fp32 reference, and how the
runtime is chosen: the fast path must score what the reference scores, keep the model-file hash
checks, and give way to the manifest's runtime where it cannot run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.antispoof.detector import OnnxModel, TorchAasist, load_countermeasure
from voiceid.antispoof.fast import FastAasist, cpu_has_native_bf16
from voiceid.antispoof.fetch import builtin_manifest
from voiceid.antispoof.manifest import AASIST_FILE, MANIFEST_NAME, write_manifest
from voiceid.config import CmRuntime, Settings
from voiceid.errors import ErrorCode, VoiceIdError

needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="the bf16 runtime needs native bf16")

# Window scores are logit differences spread over about +-13 on dev_spoof; bf16 moves them by a few
# hundredths, up to about 0.15 near the middle of the range (0.04 nats after the back-end's slope of 0.25);
# on synthetic chirps a compiled run measured 0.255 once (the kernels Inductor picks vary with the
# process). A broken fast path (a wrong filter, a layer skipped) is off by whole units.
SCORE_TOLERANCE = 0.4


@pytest.fixture(scope="module")
def reference(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> TorchAasist:
    """The fp32 PyTorch network on the installed checkpoint: the reference implementation."""
    path = tmp_path_factory.mktemp("aasist-torch")
    shutil.copyfile(settings.cm_model_dir / AASIST_FILE, path / AASIST_FILE)
    write_manifest(path, builtin_manifest(4))
    cm = load_countermeasure(path, threads=1)
    assert isinstance(cm, TorchAasist)
    return cm


@pytest.fixture(scope="module")
def fast(settings: Settings) -> FastAasist:
    """What the service loads by default (auto) from the installed model directory: on a CPU with
    native bf16, the compiled bf16 network (compiled once for the module: tens of seconds)."""
    if not cpu_has_native_bf16():
        pytest.skip("the bf16 runtime needs native bf16")
    cm = load_countermeasure(settings.cm_model_dir, threads=1, max_windows=4, runtime=CmRuntime.AUTO)
    assert isinstance(cm, FastAasist)
    return cm


def _random_calls() -> list[np.ndarray]:
    rng = np.random.default_rng(18)
    t = np.arange(150_000) / 16000
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t)
    return [
        (0.1 * rng.standard_normal(64_600)).astype(np.float32),  # exactly one window
        (0.02 * rng.standard_normal(20_000)).astype(np.float32),  # short: tiled to one window
        (chirp + 0.01 * rng.standard_normal(t.size)).astype(np.float32),  # 2 windows
    ]


@pytest.mark.model
@needs_bf16
def test_fast_runtime_scores_random_audio_like_the_reference(fast: FastAasist, reference: TorchAasist) -> None:
    for wave in _random_calls():
        got, want = fast.score(wave, 16000), reference.score(wave, 16000)
        assert len(got.window_scores) == len(want.window_scores)
        np.testing.assert_allclose(got.window_scores, want.window_scores, atol=SCORE_TOLERANCE)
        # the 160-d last hidden layer too: a wrong layer anywhere would not keep its direction
        assert got.embedding is not None and want.embedding is not None
        cosine = float(got.embedding @ want.embedding / np.linalg.norm(got.embedding) / np.linalg.norm(want.embedding))
        assert cosine > 0.999, cosine


@pytest.mark.devdata
@pytest.mark.model
@needs_bf16
def test_fast_runtime_scores_real_bonafide_and_spoof_like_the_reference(
    fast: FastAasist, reference: TorchAasist, settings: Settings
) -> None:
    spoof_dir = settings.dev_data_dir / "dev_spoof"
    files = [
        spoof_dir / "bonafide/asvspoof2019/asv19_bf_malacopula_L0007_bona_fide.flac",
        *sorted((spoof_dir / "spoof").rglob("*.flac"))[:2],
    ]
    scores = []
    for path in files:
        wave, rate = sf.read(str(path), dtype="float32")
        got, want = fast.score(wave, rate), reference.score(wave, rate)
        np.testing.assert_allclose(got.window_scores, want.window_scores, atol=SCORE_TOLERANCE)
        scores.append(want.score)
    assert max(scores) - min(scores) > 5  # the files span the score range, so agreement means something


@pytest.mark.model
@needs_bf16
def test_fast_runtime_keeps_the_version_and_its_own_cache(fast: FastAasist, reference: TorchAasist) -> None:
    assert fast.version == reference.version  # the fitted back-end and thresholds apply unchanged
    assert fast.cache_key != reference.cache_key  # but evaluation caches of the two are never mixed


def _onnx_copy(settings: Settings, target: Path, with_checkpoint: bool) -> Path:
    target.mkdir()
    for name in (MANIFEST_NAME, "model.onnx", *([AASIST_FILE] if with_checkpoint else [])):
        shutil.copyfile(settings.cm_model_dir / name, target / name)
    return target


@pytest.mark.model
def test_manifest_runtime_is_the_onnx_reference(settings: Settings) -> None:
    assert isinstance(load_countermeasure(settings.cm_model_dir, runtime=CmRuntime.MANIFEST), OnnxModel)


@pytest.mark.model
def test_auto_falls_back_to_the_manifest_without_the_builtin_checkpoint(settings: Settings, tmp_path: Path) -> None:
    plug_in = _onnx_copy(settings, tmp_path / "operator-model", with_checkpoint=False)
    assert isinstance(load_countermeasure(plug_in, runtime=CmRuntime.AUTO), OnnxModel)
    with pytest.raises(VoiceIdError) as info:
        load_countermeasure(plug_in, runtime=CmRuntime.TORCH_BF16)
    assert info.value.code == ErrorCode.CONFIGURATION_ERROR


@pytest.mark.model
@needs_bf16
def test_a_tampered_checkpoint_stops_the_fast_runtime(settings: Settings, tmp_path: Path) -> None:
    model_dir = _onnx_copy(settings, tmp_path / "aasist", with_checkpoint=True)
    data = bytearray((model_dir / AASIST_FILE).read_bytes())
    data[-100] ^= 0xFF
    (model_dir / AASIST_FILE).write_bytes(bytes(data))
    for runtime in (CmRuntime.AUTO, CmRuntime.TORCH_BF16):
        with pytest.raises(VoiceIdError) as info:
            load_countermeasure(model_dir, runtime=runtime)
        assert info.value.code == ErrorCode.MODEL_FILE_CORRUPT


@pytest.mark.model
@needs_bf16
def test_fast_runtime_scores_the_same_from_concurrent_inference_workers(fast: FastAasist) -> None:
    """The service's inference pool calls the compiled network from several threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    calls = _random_calls()
    alone = [fast.score(wave, 16000).window_scores for wave in calls]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda wave: fast.score(wave, 16000).window_scores, calls * 2))
    assert together == alone * 2


@pytest.mark.model
@needs_bf16
def test_a_call_runs_the_network_compiled_at_load(settings: Settings) -> None:
    """Nothing is compiled on a caller's request: the example compiled at load has the dispatch keys
    and strides of the windows `_forward` passes. A guard that failed here made the first call of the
    service compile the network again (seconds, in a request), and the process ran every compiled
    window at the speed of eager bf16 afterwards (0.30 s instead of 0.15 s through the app)."""
    import torch

    cm = load_countermeasure(settings.cm_model_dir, threads=1, max_windows=4, runtime=CmRuntime.TORCH_BF16)
    assert isinstance(cm, FastAasist)
    with torch.compiler.set_stance("fail_on_recompile"):
        for wave in _random_calls():
            cm.score(wave, 16000)
