"""Cross-channel voiceprints and the second chance: the pure pieces (issue 19, items 3 and 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.audio.phone_line import Law, phone_line
from voiceid.enrolment.views import ChannelSample, phone_voiceprint
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.protocol import Protocol, Utterance, build_protocol, extend_tests, join_tests
from voiceid.evaluation.runner import score_population, voiceprints_of
from voiceid.evaluation.second_chance import after_second_chance, second_chance_report
from voiceid.verify.scorer import Scorer
from voiceid.verify.vectors import build_voiceprint, cosine_matrix


def _unit(rng: np.random.Generator, n: int, dim: int = 192) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# --- the phone view -------------------------------------------------------------------------


def test_phone_voiceprint_is_built_from_each_utterances_phone_channel_embedding() -> None:
    rng = np.random.default_rng(0)
    native, views = _unit(rng, 3), _unit(rng, 3)
    wide = [ChannelSample(native[i], "wideband", views[i]) for i in range(2)]
    phone = ChannelSample(native[2], "phone", None)
    got = phone_voiceprint([*wide, phone])
    assert got is not None
    # wideband utterances contribute their G.711 view, the phone one its own embedding
    np.testing.assert_allclose(got, build_voiceprint(np.stack([views[0], views[1], native[2]])), atol=1e-6)
    # a wideband utterance whose view had no speech keeps its own embedding: no audio is dropped
    partial = phone_voiceprint([wide[0], ChannelSample(native[1], "wideband", None)])
    assert partial is not None
    np.testing.assert_allclose(partial, build_voiceprint(np.stack([views[0], native[1]])), atol=1e-6)


def test_no_phone_voiceprint_without_a_wideband_view() -> None:
    rng = np.random.default_rng(1)
    v = _unit(rng, 2)
    assert phone_voiceprint([ChannelSample(v[0], "phone", None), ChannelSample(v[1], "phone", None)]) is None
    assert phone_voiceprint([ChannelSample(v[0], "wideband", None)]) is None  # views off or none usable
    assert phone_voiceprint([]) is None


def test_the_service_phone_view_is_the_evaluated_g711_channel(tmp_path: Path) -> None:
    """One phone-line simulation: the bytes the service embeds as the phone view of a wideband file
    are exactly the bytes `voiceid eval --channel g711-ulaw` sends for it."""
    rate = 16000
    t = np.arange(rate) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
    path = tmp_path / "u.flac"
    sf.write(path, samples, rate, subtype="PCM_16")
    decoded, _ = sf.read(path, dtype="float32")
    assert phone_line(decoded, rate) == through_channel(path, "g711-ulaw")
    assert phone_line(decoded, rate, Law.ALAW) == through_channel(path, "g711-alaw")
    data, content_type = phone_line(decoded, rate)
    assert content_type == "audio/basic" and len(data) == 8000  # 1 s at 8 kHz, one byte a sample


# --- second-chance protocol ------------------------------------------------------------------


def _protocol(n_speakers: int = 2, n_utts: int = 10, enrol: int = 3) -> Protocol:
    utts = [
        Utterance(f"s{s}-u{k}", f"s{s}", Path(f"/x/s{s}/u{k}.flac")) for s in range(n_speakers) for k in range(n_utts)
    ]
    return build_protocol(utts, enrol)


def test_extend_tests_adds_the_calls_next_utterance() -> None:
    base = _protocol()
    singles = extend_tests(base, 1)
    # 7 test utterances per speaker: the first 6 have a next one
    assert len(singles) == 12
    ext = singles["s0-u3"]
    assert ext.utt_id == "s0-u3+s0-u4" and ext.speaker_id == "s0"
    assert ext.path == Path("/x/s0/u3.flac") and ext.extra == (Path("/x/s0/u4.flac"),)
    assert "s0-u9" not in singles  # the last utterance of a speaker has no next one
    triples = extend_tests(base, 3)
    probes = [u.utt_id for u in join_tests(base, 3).tests]
    assert set(triples) == set(probes)  # both 3-utterance probes of each speaker have a 4th utterance
    assert triples["s1-u6+s1-u7+s1-u8"].extra == tuple(Path(f"/x/s1/u{k}.flac") for k in (7, 8, 9))
    with pytest.raises(ValueError):
        extend_tests(base, 0)


def test_second_chance_replaces_only_inconclusive_decisions() -> None:
    first = np.array([["ACCEPT", "INCONCLUSIVE"], ["INCONCLUSIVE", "REJECT"], ["INCONCLUSIVE", "INCONCLUSIVE"]])
    second = np.array([["REJECT", "ACCEPT"], ["ACCEPT", "ACCEPT"], ["INCONCLUSIVE", "REJECT"]])
    final = after_second_chance(first, second)
    assert final.tolist() == [["ACCEPT", "ACCEPT"], ["ACCEPT", "REJECT"], ["INCONCLUSIVE", "REJECT"]]
    is_target = np.array([[True, False], [True, False], [True, False]])
    report = second_chance_report(first, second, is_target)
    g, i = report["genuine"], report["impostor"]
    assert g["before"]["accept"] == 1 and g["after"]["accept"] == 2 and g["second_chances"] == 2
    assert g["accepted_on_second_chance"] == 1 and g["after"]["inconclusive"] == 1
    # the impostor who was INCONCLUSIVE and then scored an ACCEPT counts against the two-step policy
    assert i["before"]["accept"] == 0 and i["after"]["accept"] == 1 and i["second_chances"] == 2
    assert report["impostor_accept_rate_after"] == pytest.approx(1 / 3, abs=1e-6)
    with pytest.raises(ValueError):
        after_second_chance(first, second[:2])


# --- cross-channel scoring ---------------------------------------------------------------------


def test_population_scoring_with_claim_vectors_scores_the_claimed_print_and_keeps_the_cohort() -> None:
    """`score_population` with claim vectors (the phone view): the raw score is against the voiceprint
    built from them; the cohort still holds the population's own voiceprints (as the service's does)."""
    rng = np.random.default_rng(2)
    base = _protocol(n_speakers=4, n_utts=5, enrol=2)
    vectors = {u.utt_id: v for u, v in zip(base.tests, _unit(rng, len(base.tests)), strict=True)}
    enrolment = [u for utts in base.enrolment.values() for u in utts]
    vectors.update({u.utt_id: v for u, v in zip(enrolment, _unit(rng, len(enrolment)), strict=True)})
    views = {u.utt_id: v for u, v in zip(enrolment, _unit(rng, len(enrolment)), strict=True)}
    scorer = Scorer("none", 0, {"phone": _unit(rng, 5)}, {}, cohort_size=10)
    plain = score_population(base, vectors, scorer, "phone")
    same = score_population(base, vectors, scorer, "phone", claim_vectors=vectors)
    np.testing.assert_allclose(plain.scores, same.scores, atol=1e-6)
    viewed = score_population(base, vectors, scorer, "phone", claim_vectors=views)
    speakers, _ = voiceprints_of(base, views)
    claimed = np.stack([build_voiceprint(np.stack([views[u.utt_id] for u in base.enrolment[s]])) for s in speakers])
    probes = np.stack([vectors[u.utt_id] for u in base.tests])
    np.testing.assert_allclose(viewed.scores, cosine_matrix(probes, claimed), atol=1e-5)
    assert viewed.speakers == plain.speakers and (viewed.is_target == plain.is_target).all()


def test_a_cohort_of_phone_views_makes_a_cross_channel_trial_a_phone_trial() -> None:
    """With the population cohort serving the phone views too, a wideband-enrolled caller on the phone is
    scored exactly as if they had enrolled over the phone (the docs' claim for the fix)."""
    rng = np.random.default_rng(3)
    base = _protocol(n_speakers=5, n_utts=5, enrol=2)
    enrolment = [u for utts in base.enrolment.values() for u in utts]
    probes = {u.utt_id: v for u, v in zip(base.tests, _unit(rng, len(base.tests)), strict=True)}
    wide = {u.utt_id: v for u, v in zip(enrolment, _unit(rng, len(enrolment)), strict=True)}
    views = {u.utt_id: v for u, v in zip(enrolment, _unit(rng, len(enrolment)), strict=True)}
    scorer = Scorer("as-norm", 3, {"phone": _unit(rng, 6)}, {}, cohort_size=8)
    phone_enrolled = score_population(base, {**probes, **views}, scorer, "phone")
    viewed = score_population(base, {**probes, **wide}, scorer, "phone", claim_vectors=views, view_cohort=True)
    np.testing.assert_allclose(viewed.scores, phone_enrolled.scores, atol=1e-5)
    # without the view cohort the claimed print is normalised against the wideband voiceprints
    mixed = score_population(base, {**probes, **wide}, scorer, "phone", claim_vectors=views)
    assert not np.allclose(mixed.scores, phone_enrolled.scores, atol=1e-3)
