"""The countermeasure on real dev_spoof audio, through the built-in AASIST and through the plug-in path
(the same model exported to ONNX and loaded from a model directory by its manifest alone)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from voiceid.antispoof.detector import OnnxModel, TorchAasist, load_countermeasure
from voiceid.antispoof.export import export_onnx
from voiceid.antispoof.manifest import MANIFEST_NAME, read_manifest
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.evaluation.channel import through_channel

# One ASVspoof 2019 LA speaker (LA_0007): the genuine recording and a spoof of it (system A09), same source.
BONAFIDE = "bonafide/asvspoof2019/asv19_bf_malacopula_L0007_bona_fide.flac"


@pytest.fixture(scope="module")
def spoof_dir(settings: Settings) -> Path:
    path = settings.dev_data_dir / "dev_spoof"
    if not (path / "manifest.csv").is_file():
        pytest.fail(f"dev_spoof not found at {path}; set VOICEID_DEV_DATA_DIR to ../shared/data")
    return path


def _spoof_path(spoof_dir: Path) -> Path:
    import csv

    with (spoof_dir / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["utt_id"] == "asv19_sp_malacopula_L0007_A09_spoof":
                return spoof_dir / row["path"]
    raise AssertionError("the A09 spoof of LA_0007 is missing from dev_spoof")


@pytest.mark.devdata
@pytest.mark.model
@pytest.mark.parametrize("channel", ["clean", "g711-ulaw"])
def test_a_spoof_scores_below_its_sources_bonafide(settings: Settings, spoof_dir: Path, channel: str) -> None:
    cm = load_countermeasure(settings.cm_model_dir)
    front = FrontEnd(FrontEndConfig.from_settings(settings))
    scores = []
    for path in (spoof_dir / BONAFIDE, _spoof_path(spoof_dir)):
        data, content_type = through_channel(path, channel)
        decoded = front.decode(data, content_type)
        scores.append(cm.score(decoded.samples, decoded.sample_rate).score)
    bona, spoof = scores
    assert bona > 0 > spoof, scores  # the network's own log-odds: bona fide positive, spoof negative


@pytest.fixture(scope="module")
def torch_dir(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model as its PyTorch checkpoint + manifest (whatever format the installed one uses)."""
    from voiceid.antispoof.fetch import builtin_manifest
    from voiceid.antispoof.manifest import write_manifest

    path = tmp_path_factory.mktemp("aasist-torch")
    shutil.copyfile(settings.cm_model_dir / "AASIST.pth", path / "AASIST.pth")
    write_manifest(path, builtin_manifest(settings.cm_max_windows))
    return path


@pytest.mark.devdata
@pytest.mark.model
def test_exported_onnx_model_plugs_in_by_manifest_and_scores_the_same(
    torch_dir: Path, spoof_dir: Path, tmp_path: Path
) -> None:
    plug_in = tmp_path / "operator-model"
    manifest = export_onnx(torch_dir, plug_in)
    assert (plug_in / MANIFEST_NAME).is_file() and manifest.file == "model.onnx"
    built_in, dropped_in = load_countermeasure(torch_dir), load_countermeasure(plug_in)
    assert isinstance(built_in, TorchAasist) and isinstance(dropped_in, OnnxModel)
    assert dropped_in.version == built_in.version  # same weights, same scores: one version
    import soundfile as sf

    for path in (spoof_dir / BONAFIDE, _spoof_path(spoof_dir)):
        wave, rate = sf.read(str(path), dtype="float32")
        a, b = built_in.score(wave, rate), dropped_in.score(wave, rate)
        assert b.score == pytest.approx(a.score, abs=1e-3)
        assert a.embedding is not None and b.embedding is not None
        assert np.allclose(a.embedding, b.embedding, atol=1e-3)


@pytest.mark.model
def test_a_plug_in_scoring_the_other_way_round_is_flipped(torch_dir: Path, tmp_path: Path) -> None:
    """An operator model whose single output is a spoof score (higher = spoof): the manifest says so."""
    plug_in = tmp_path / "reversed"
    export_onnx(torch_dir, plug_in)
    data = json.loads((plug_in / MANIFEST_NAME).read_text())
    data["score_direction"] = "higher-spoof"
    (plug_in / MANIFEST_NAME).write_text(json.dumps(data))
    wave = (0.05 * np.random.default_rng(0).standard_normal(64600)).astype(np.float32)
    normal, flipped = load_countermeasure(torch_dir).score(wave, 16000), load_countermeasure(plug_in).score(wave, 16000)
    assert flipped.score == pytest.approx(-normal.score, abs=1e-3)


@pytest.mark.model
def test_a_tampered_or_incomplete_model_directory_is_refused(torch_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(torch_dir, bad)
    with (bad / "AASIST.pth").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(VoiceIdError) as err:
        load_countermeasure(bad)
    assert err.value.code == ErrorCode.MODEL_FILE_CORRUPT
    (bad / MANIFEST_NAME).write_text('{"name": "x"}')
    with pytest.raises(VoiceIdError) as err:
        read_manifest(bad)
    assert err.value.code == ErrorCode.CONFIGURATION_ERROR
    (bad / MANIFEST_NAME).unlink()
    with pytest.raises(VoiceIdError) as err:
        load_countermeasure(bad)
    assert err.value.code == ErrorCode.MODEL_FILE_MISSING
