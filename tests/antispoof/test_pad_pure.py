"""PAD maths without a model: windows, ISO 30107-3 metrics, thresholds, the decision policy, the back-end."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voiceid.antispoof.backend import FeatureGroup, PadBackend, features, fit_backend
from voiceid.antispoof.metrics import apcer_at, apcer_at_bpcer, bpcer_at, pad_eer, threshold_at_bpcer
from voiceid.antispoof.policy import PadAction, PadThresholds, apply_pad_flag, fit_channel_threshold
from voiceid.antispoof.windows import frame_windows, window_count
from voiceid.evaluation.pad import PadItem, pad_report, sources_of
from voiceid.verify.decision import Decision, Outcome, Reason


def test_short_audio_is_tiled_to_one_window() -> None:
    w = frame_windows(np.arange(10, dtype=np.float32), 25, 4)
    assert w.shape == (1, 25)
    assert list(w[0, :12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_long_audio_gets_evenly_spaced_windows_up_to_the_cap() -> None:
    wave = np.arange(1000, dtype=np.float32)
    w = frame_windows(wave, 100, 4)
    assert w.shape == (4, 100)
    assert w[0, 0] == 0 and w[-1, -1] == 999  # first and last samples covered
    assert window_count(250, 100, 8) == 2 and window_count(10_000, 100, 8) == 8


def test_bpcer_threshold_arithmetic() -> None:
    bona = np.arange(100, dtype=float)  # 0..99
    # 5 % of 100 genuine calls may be flagged: the threshold is the 6th lowest score (index 5).
    t = threshold_at_bpcer(bona, 0.05)
    assert t == 5.0
    assert bpcer_at(bona, t) == 0.05
    # 1 %: index 1; 0 %: nothing below the lowest score
    assert threshold_at_bpcer(bona, 0.01) == 1.0
    assert bpcer_at(bona, threshold_at_bpcer(bona, 0.0)) == 0.0
    spoof = np.array([-5.0, 0.5, 4.0, 5.0, 50.0])
    apcer, threshold = apcer_at_bpcer(bona, spoof, 0.05)
    assert threshold == 5.0
    assert apcer == pytest.approx(2 / 5)  # 5.0 and 50.0 pass (score >= threshold)
    assert apcer_at(spoof, 100.0) == 0.0


def test_channel_threshold_keeps_bpcer_at_or_under_target() -> None:
    rng = np.random.default_rng(0)
    for n, target in [(37, 0.05), (184, 0.05), (184, 0.01), (1000, 0.02)]:
        bona = rng.normal(2.0, 1.5, n)
        entry = fit_channel_threshold(bona, target)
        assert entry.bpcer_on_dev <= target
        assert entry.bpcer_on_dev == pytest.approx(np.floor(target * n) / n)


def test_eer_of_separated_and_identical_scores() -> None:
    assert pad_eer(np.array([2.0, 3.0]), np.array([0.0, 1.0]))[0] == 0.0
    rate, _ = pad_eer(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert 0.25 <= rate <= 0.5


@pytest.mark.parametrize(
    ("decision", "action"),
    list(itertools.product([Decision.ACCEPT, Decision.REJECT, Decision.INCONCLUSIVE], PadAction)),
)
def test_a_flagged_call_is_never_accepted(decision: Decision, action: PadAction) -> None:
    outcome = Outcome(decision, (Reason.SCORE_ABOVE_ACCEPT_THRESHOLD,))
    for reason in (Reason.SPOOF_SUSPECTED, Reason.REPLAY_SUSPECTED):
        flagged = apply_pad_flag(outcome, True, reason, action)
        assert flagged.decision != Decision.ACCEPT
        assert flagged.reasons[-1] == reason
        expected = (
            Decision.REJECT if action == PadAction.REJECT or decision == Decision.REJECT else Decision.INCONCLUSIVE
        )
        assert flagged.decision == expected
        assert apply_pad_flag(outcome, False, reason, action) == outcome


def test_decisions_without_audio_are_left_alone() -> None:
    locked = Outcome(Decision.LOCKED, (Reason.LOCKED_OUT,))
    assert apply_pad_flag(locked, True, Reason.SPOOF_SUSPECTED, PadAction.REJECT) == locked


def test_thresholds_per_channel_and_round_trip() -> None:
    bona = np.linspace(-1, 5, 200)
    thresholds = PadThresholds(
        "cm/x", {"wideband": fit_channel_threshold(bona, 0.05), "phone": fit_channel_threshold(bona - 2, 0.05)}
    )
    again = PadThresholds.from_dict(thresholds.to_dict())
    assert again.channels.keys() == thresholds.channels.keys()
    t_wide, t_phone = again.threshold("wideband"), again.threshold("phone")
    assert t_phone < t_wide
    assert again.flagged(t_wide - 0.01, "wideband") and not again.flagged(t_wide + 0.01, "wideband")


def test_backend_logistic_regression_separates_and_calibrates() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(2, 1, (300, 1)), rng.normal(-2, 1, (600, 1))])
    y = np.concatenate([np.ones(300, dtype=np.int64), np.zeros(600, dtype=np.int64)])
    backend = fit_backend([FeatureGroup.AASIST_SCORE], x, y, 1e-3, "cm-x")
    llr = backend.llr(np.array([[2.0], [0.0], [-2.0]]))
    # Two unit Gaussians at +-2: the true LLR is 4x, so 8 / 0 / -8 (class weighting removes the prior).
    assert llr == pytest.approx([8.0, 0.0, -8.0], abs=1.5)
    again = PadBackend.from_dict(backend.to_dict())
    assert again.llr(np.array([1.0])) == pytest.approx(backend.llr(np.array([1.0])), abs=1e-3)


def test_features_concatenate_groups_in_order() -> None:
    x = features(
        [FeatureGroup.AASIST_SCORE, FeatureGroup.AASIST_SPREAD, FeatureGroup.ECAPA_EMBEDDING],
        [1.0, 3.0],
        None,
        np.array([0.5, 0.25]),
    )
    assert list(x) == [2.0, 1.0, 3.0, 0.5, 0.25]


def test_sources_group_repositories_without_bonafide_by_owner() -> None:
    repos = ["a/x@1", "a/x@1", "a/y@1", "a/y@1", "e/m@2", "e/n@3", "e/o@3"]
    labels = ["bonafide", "spoof", "bonafide", "spoof", "bonafide", "spoof", "spoof"]
    assert sources_of(repos, labels) == ["a/x", "a/x", "a/y", "a/y", "e", "e", "e"]


def test_pad_report_per_source_compares_spoofs_with_their_own_bonafide(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def item(uid: str, label: str, attack: str, source: str) -> PadItem:
        return PadItem(uid, label, attack, "s", tmp_path / uid, source)

    items = [
        item("b1", "bonafide", "bonafide", "A"),
        item("b2", "bonafide", "bonafide", "A"),
        item("s1", "spoof", "vc", "A"),
        item("b3", "bonafide", "bonafide", "B"),
        item("s2", "spoof", "tts", "B"),
    ]
    # Source A: spoof well below its bona fide; source B: the spoof beats its bona fide.
    scores = {"b1": 5.0, "b2": 6.0, "s1": 0.0, "b3": 1.0, "s2": 2.0}
    report = pad_report(items, scores)
    assert report["per_source"]["A"]["eer"] == 0.0
    assert report["per_source"]["B"]["eer"] == 1.0
    assert set(report["per_attack"]) == {"vc", "tts"}
    assert {"eer", "apcer_at_bpcer_1pct", "apcer_at_bpcer_5pct", "per_attack"} <= set(report)
