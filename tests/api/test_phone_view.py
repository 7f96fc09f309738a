"""Voiceprints that follow the caller (issue 19, item 3): a wideband enrolment also keeps the voiceprint
of its G.711 view, phone calls are scored against it, wideband calls against the voiceprint, and
erasure takes both."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from voiceid.audio.quality import QualityReport
from voiceid.engine import EmbeddedUtterance
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.storage import models as m
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.engines import ScriptedEngine, unit
from voiceid.verify.vectors import build_voiceprint


@dataclass
class TwoChannelEngine(ScriptedEngine):
    """Bodies starting with b"wb" arrive wideband and have a scripted G.711 view; others are phone."""

    views: dict[bytes, np.ndarray | None] = field(default_factory=dict)
    view_calls: list[bytes] = field(default_factory=list)

    def register_wideband(self, body: bytes, vector: np.ndarray, view: np.ndarray | None) -> bytes:
        self.views[body] = view
        return self.register(body, vector, net_speech_s=6.0)

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        got = super().analyse(data, content_type)
        if not data.startswith(b"wb"):
            return got
        wide = QualityReport(7.0, 6.0, 30.0, 0.0, 16000, "PCM_16", "wideband")
        return EmbeddedUtterance(got.vector, got.model_version, wide)

    def embed_phone_view(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        self.view_calls.append(data)
        view = self.views[data]
        if view is None:
            raise VoiceIdError(ErrorCode.NO_SPEECH, "no speech was detected in the audio")
        phone = QualityReport(7.0, 5.5, 30.0, 0.0, 8000, "ULAW", "phone")
        return EmbeddedUtterance(view.astype(np.float32), self.model_version, phone)


def _enrol(api, speaker: str, bodies: list[bytes]) -> None:
    api.put_speaker(speaker)
    for body in bodies:
        r = api.client.post(
            f"/v1/speakers/{speaker}/enrolment-audio",
            content=body,
            headers={**api.h("enrolment"), "Content-Type": "audio/wav"},
        )
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "ENROLLED"


def _speaker(api, ref: str) -> m.Speaker:
    with api.service.db.transaction() as session:
        speaker = repo.get_speaker(session, ref)
        assert speaker is not None
        session.expunge(speaker)
        return speaker


def test_phone_calls_meet_the_phone_view_and_wideband_calls_the_voiceprint(make_api) -> None:
    engine = TwoChannelEngine()
    key = SecretStr(generate_key_text())
    api = make_api(engine=engine, enrol_min_speech_s=10.0, enrol_phone_view=True, encryption_key=key)
    native, views = [unit(1), unit(2)], [unit(11), unit(12)]
    bodies = [engine.register_wideband(f"wb-enrol-{i}".encode(), native[i], views[i]) for i in range(2)]
    _enrol(api, "mobile-app", bodies)
    assert engine.view_calls == bodies  # one view per wideband enrolment utterance
    main, phone = build_voiceprint(np.stack(native)), build_voiceprint(np.stack(views))

    probe = unit(30)
    # the scripted thresholds are on raw cosine (score_norm none): the score is the cosine itself
    phone_call = api.verify("mobile-app", engine.register(b"phone-call", probe), content_type="audio/basic")
    assert phone_call["channel"] == "phone"
    assert phone_call["raw_score"] == pytest.approx(float(probe @ phone), abs=1e-4)
    wide_call = api.verify("mobile-app", engine.register_wideband(b"wb-call", probe, None))
    assert wide_call["channel"] == "wideband"
    assert wide_call["raw_score"] == pytest.approx(float(probe @ main), abs=1e-4)
    assert abs(float(probe @ phone) - float(probe @ main)) > 1e-3  # the two really differ
    # turned off, the stored phone voiceprint is no longer used: phone calls meet the voiceprint
    off = make_api(engine=engine, enrol_min_speech_s=10.0, enrol_phone_view=False, encryption_key=key)
    again = off.verify("mobile-app", engine.register(b"phone-call-2", probe), content_type="audio/basic")
    assert again["raw_score"] == pytest.approx(float(probe @ main), abs=1e-4)

    # stored sealed, under the speaker's key, and gone with the erasure
    speaker = _speaker(api, "mobile-app")
    vault = api.service.cipher
    np.testing.assert_allclose(repo.voiceprint_for_channel(vault, speaker, "phone"), phone, atol=1e-6)
    np.testing.assert_allclose(repo.voiceprint_for_channel(vault, speaker, "wideband"), main, atol=1e-6)
    assert speaker.phone_voiceprint is not None and phone.tobytes() not in speaker.phone_voiceprint
    with api.service.db.transaction() as session:
        rows = session.scalars(select(m.EnrolmentEmbedding).where(m.EnrolmentEmbedding.speaker_id == speaker.id)).all()
        assert len(rows) == 2 and all(r.phone_view is not None for r in rows)
    r = api.client.post("/v1/speakers/mobile-app/enrolment/reset", headers=api.h("enrolment"))
    assert r.status_code == 200, r.text
    erased = _speaker(api, "mobile-app")
    assert erased.phone_voiceprint is None and erased.voiceprint is None


def test_phone_enrolment_and_the_setting_off_keep_one_voiceprint(make_api) -> None:
    engine = TwoChannelEngine()
    api = make_api(engine=engine, enrol_min_speech_s=10.0, enrol_phone_view=True)
    _enrol(api, "ivr-caller", [engine.register(f"ph-{i}".encode(), unit(40 + i)) for i in range(2)])
    assert engine.view_calls == [] and _speaker(api, "ivr-caller").phone_voiceprint is None
    # off by default until the population cohort serves phone views (docs/decision-policy.md)
    default = make_api(engine=engine, enrol_min_speech_s=10.0)
    _enrol(
        default, "default", [engine.register_wideband(f"wb-d-{i}".encode(), unit(90 + i), unit(95 + i)) for i in (0, 1)]
    )
    assert engine.view_calls == [] and _speaker(default, "default").phone_voiceprint is None

    off = make_api(engine=engine, enrol_min_speech_s=10.0, enrol_phone_view=False)
    _enrol(
        off, "no-views", [engine.register_wideband(f"wb-off-{i}".encode(), unit(50 + i), unit(60 + i)) for i in (0, 1)]
    )
    assert engine.view_calls == [] and _speaker(off, "no-views").phone_voiceprint is None


def test_a_view_without_speech_still_enrols_the_utterance(make_api) -> None:
    engine = TwoChannelEngine()
    api = make_api(engine=engine, enrol_min_speech_s=10.0, enrol_phone_view=True)
    native = [unit(70), unit(71)]
    bodies = [
        engine.register_wideband(b"wb-a", native[0], unit(80)),
        engine.register_wideband(b"wb-b", native[1], None),  # the G.711 view lost all speech
    ]
    _enrol(api, "half-view", bodies)
    speaker = _speaker(api, "half-view")
    got = repo.voiceprint_for_channel(api.service.cipher, speaker, "phone")
    np.testing.assert_allclose(got, build_voiceprint(np.stack([unit(80), native[1]])), atol=1e-6)


@pytest.mark.model
@pytest.mark.devdata
def test_api_phone_call_against_wideband_enrolment_scores_as_eval_phone_view(make_api, engine, dev_files, settings):
    """`voiceid eval --enrol-channel clean --channel g711-ulaw --phone-view` measures what the service
    does: same G.711 view of the enrolment audio, same voiceprint, same score and LLR."""
    import dataclasses

    from voiceid.audio.frontend import FrontEndConfig
    from voiceid.evaluation.channel import through_channel
    from voiceid.evaluation.embedders import speech_meter
    from voiceid.evaluation.operating_point import trial_llrs
    from voiceid.evaluation.protocol import Protocol, Utterance
    from voiceid.evaluation.regimes import regime_for, regime_trials
    from voiceid.evaluation.runner import EmbeddingCache, embed_run
    from voiceid.verify.cohort import BUILTIN_DIR, find_cohort

    claimed, others = "so762_0135", ["so762_0036"]
    api = make_api(engine=engine, enrol_min_speech_s=1.0, enrol_phone_view=True)
    for speaker in [*others, claimed]:
        api.put_speaker(speaker)
        for path in dev_files[speaker][:2]:
            body, ctype = through_channel(path, "clean")
            headers = {**api.h("enrolment"), "Content-Type": ctype}
            r = api.client.post(f"/v1/speakers/{speaker}/enrolment-audio", content=body, headers=headers)
            assert r.status_code == 200, r.text
    api.service.refresh_cohort()
    probe = dev_files[claimed][5]
    got = api.verify(claimed, *through_channel(probe, "g711-ulaw"))
    assert got["channel"] == "phone"

    cohort = find_cohort(
        [BUILTIN_DIR], engine.model_version, "phone", FrontEndConfig.from_settings(settings).embedding_key
    )
    assert cohort is not None
    protocol = Protocol(
        enrolment={s: [Utterance(p.stem, s, p) for p in dev_files[s][:2]] for s in [*others, claimed]},
        tests=[Utterance(probe.stem, claimed, probe)],
    )
    run = embed_run(
        protocol,
        "g711-ulaw",
        lambda d, c: engine.analyse(d, c).vector,
        EmbeddingCache(None, ""),
        None,
        speech=speech_meter(settings),
        enrol_channel="clean",
        phone_view=True,
    )
    assert run.service_channel == "phone" and run.claim_vectors is not None
    run = dataclasses.replace(run, cohort=cohort.embeddings)
    # Two callers enrolled: the regime of a small deployment (evaluation/regimes.py), as the service.
    regime = regime_for(api.service.scorer.calibrations["phone"], settings, population=2)
    assert regime.calibration.calibration_id == got["calibration"]
    trials = regime_trials(run, regime, settings)
    column = trials.speakers.index(claimed)
    assert float(run.trials("none", 0).scores[0, column]) == pytest.approx(got["raw_score"], abs=1e-4)
    assert float(trials.scores[0, column]) == pytest.approx(got["score"], abs=1e-3)
    llr = trial_llrs(trials.scores, trials.probe_speech_s, regime.calibration)
    assert float(llr[0, column]) == pytest.approx(got["llr"], abs=0.02)
    # and not what the wideband voiceprint would have given
    plain = dataclasses.replace(run, claim_vectors=None).trials("none", 0)
    assert abs(float(plain.scores[0, column]) - got["raw_score"]) > 1e-3
