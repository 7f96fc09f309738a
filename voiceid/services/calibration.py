"""The self-calibration on the operator's own population: its trials, the worker job and the cache.

- `fit_population` scores non-target trials of the enrolled population (every sampled enrolled
  voiceprint against enrolment audio of *other* enrolled identities) through the service's own
  `Scorer`, with the cohort snapshot the service normalises with, and hands the LLRs to the pure fit
  (verify/selfcal.py). The trial's cohort leaves out both the claimed speaker and the identity whose
  audio it is (most impostors in the field are not enrolled, and an enrolled one's own voiceprint in
  the cohort would flatter the trial); the regime is counted as the service counts it.
- `refresh_self_calibration` is the worker job: one fit per model version, stored as a new snapshot
  only when its content changed (the version is a content hash: the same population and cohort give
  the same fit, so it is reproducible), older snapshots pruned.
- `SelfCalibrationCache` (each serving process) holds the newest snapshot, polled like the cohort.

Bounded cost: at most `selfcal_max_speakers` identities (the bottom-k sample by random id, as the
cohort), `selfcal_probes_per_speaker` utterances each and `selfcal_max_trials` trials per channel,
picked by a stable hash. No biometric data is stored with a fit: shifts, counts and versions only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voiceid.config import Settings
from voiceid.services.cohort import CohortCache, CohortState, add_snapshot, latest_snapshot
from voiceid.statuses import SpeakerStatus
from voiceid.storage.crypto import associated_data
from voiceid.storage.keys import KeyShreddedError, Vault
from voiceid.storage.models import EnrolmentEmbedding, SelfCalibrationSnapshot, Speaker
from voiceid.storage.repositories import get_voiceprint, voiceprint_for_channel
from voiceid.verify.cohort import PHONE
from voiceid.verify.policy import DecisionPolicy
from voiceid.verify.scorer import Scorer
from voiceid.verify.selfcal import SelfCalibration, SelfCalLimits, cap_per_owner, fit_channel_shift

FloatArray = npt.NDArray[np.float32]
KEEP_FITS = 3


def limits_from(settings: Settings) -> SelfCalLimits:
    return SelfCalLimits(
        min_trials=settings.selfcal_min_trials,
        tail_errors=settings.selfcal_tail_errors,
        prior_pairs=settings.selfcal_prior_pairs,
        max_lower=settings.selfcal_max_lower,
        max_raise=settings.selfcal_max_raise,
        min_speakers_to_lower=settings.selfcal_min_speakers_to_lower,
    )


@dataclass(frozen=True)
class Population:
    """What a fit reads: the sampled identities' voiceprints and their enrolment utterances."""

    ids: list[str]
    voiceprints: FloatArray  # (n, d), rows in `ids` order
    phone_voiceprints: FloatArray  # what a phone call meets: the phone view where there is one
    probe_owner: list[int]  # index into `ids` of each probe's identity
    probes: FloatArray  # (m, d)
    probe_channel: list[str]
    probe_speech_s: npt.NDArray[np.float64]


def read_population(session: Session, vault: Vault, settings: Settings, model_version: str) -> Population:
    speakers = session.scalars(
        select(Speaker)
        .where(
            Speaker.voiceprint_model_version == model_version,
            Speaker.voiceprint.is_not(None),
            # held duplicates (REVIEW_REQUIRED) may be one person under two names: not non-targets
            Speaker.status == SpeakerStatus.ENROLLED,
        )
        .order_by(Speaker.id)
        .limit(settings.selfcal_max_speakers)
    ).all()
    ids, prints, phones = [], [], []
    for speaker in speakers:
        vector = get_voiceprint(vault, speaker)
        phone = voiceprint_for_channel(vault, speaker, PHONE, phone_view=True)
        if vector is not None and phone is not None:
            ids.append(speaker.id)
            prints.append(vector)
            phones.append(phone)
    index = {sid: k for k, sid in enumerate(ids)}
    rows = session.scalars(
        select(EnrolmentEmbedding).where(
            EnrolmentEmbedding.speaker_id.in_(ids), EnrolmentEmbedding.model_version == model_version
        )
    ).all()
    keep = cap_per_owner([r.speaker_id for r in rows], settings.selfcal_probes_per_speaker, seed=model_version)
    owner, probes, channel, speech = [], [], [], []
    for k in keep:
        row = rows[int(k)]
        try:
            vector = vault.open_vector(
                row.ciphertext, associated_data("enrolment_embedding", row.id, row.model_version)
            )
        except KeyShreddedError:
            continue  # erased
        owner.append(index[row.speaker_id])
        probes.append(vector)
        channel.append(str((row.quality or {}).get("channel") or "phone"))
        speech.append(row.net_speech_s)
    dim = prints[0].shape[-1] if prints else 0
    return Population(
        ids,
        np.stack(prints) if prints else np.zeros((0, dim), dtype=np.float32),
        np.stack(phones) if phones else np.zeros((0, dim), dtype=np.float32),
        owner,
        np.stack(probes) if probes else np.zeros((0, dim), dtype=np.float32),
        channel,
        np.asarray(speech, dtype=np.float64),
    )


def _pairs(
    population: Population, probes: list[int], same_person_cosine: float, max_trials: int
) -> list[tuple[int, int]]:
    """(probe, voiceprint) non-target pairs: other identities only, likely duplicates left out, at most
    `max_trials` of them by a stable hash."""
    vp = population.voiceprints
    unit = vp / np.maximum(np.linalg.norm(vp, axis=1, keepdims=True), 1e-12)
    similar = unit @ unit.T >= same_person_cosine
    pairs = [
        (p, a)
        for p in probes
        for a in range(len(population.ids))
        if a != population.probe_owner[p] and not similar[a, population.probe_owner[p]]
    ]
    if len(pairs) > max_trials:
        pairs.sort(key=lambda pa: hashlib.sha256(f"{pa[0]}:{population.ids[pa[1]]}".encode()).digest())
        pairs = pairs[:max_trials]
    return pairs


def fit_population(
    population: Population,
    cohort: CohortState,
    scorer: Scorer,
    policy: DecisionPolicy,
    settings: Settings,
) -> SelfCalibration:
    """Score the population's non-target trials as the service would and fit each channel's shift."""
    members = list(cohort.member_ids)
    position = {sid: k for k, sid in enumerate(members)}
    channels = []
    for channel in sorted(scorer.calibrations):
        # A phone call meets phone views (voiceprint and cohort alike) when the service serves them.
        view = settings.enrol_phone_view and channel == PHONE
        prints = population.phone_voiceprints if view else population.voiceprints
        cohort_vectors = cohort.for_channel(channel, settings.enrol_phone_view)
        probes = [k for k, c in enumerate(population.probe_channel) if c == channel]
        pairs = _pairs(population, probes, settings.selfcal_same_person_cosine, settings.selfcal_max_trials)
        by_calibration: dict[str, list[tuple[float, float, int, int]]] = {}
        for p, a in pairs:
            claimed_id, owner_id = population.ids[a], population.ids[population.probe_owner[p]]
            # The cohort less both people of the pair (positions looked up, not a scan per trial).
            drop = [position[sid] for sid in {claimed_id, owner_id} if sid in position]
            rest = np.delete(cohort_vectors, drop, axis=0) if members else cohort_vectors
            cohort_part = rest if len(rest) else None
            # The regime as the service counts it for this claimed speaker (only they are left out).
            regime = min(len(members) - (claimed_id in position), scorer.cohort_size)
            result = scorer.score(
                population.probes[p],
                prints[a],
                channel,
                float(population.probe_speech_s[p]),
                cohort_part,
                regime_members=regime,
            )
            if result.llr is not None and result.calibration_id is not None:
                by_calibration.setdefault(result.calibration_id, []).append(
                    (result.llr, float(population.probe_speech_s[p]), population.probe_owner[p], a)
                )
        for calibration in scorer.calibrations.get(channel, ()):
            trials = by_calibration.get(calibration.calibration_id)
            if not trials:
                continue
            llr, speech, owners, claimed = (np.array(col) for col in zip(*trials, strict=True))
            accept = policy.thresholds(channel, calibration.calibration_id).thresholds.accept
            channels.append(
                fit_channel_shift(
                    llr, speech, owners, claimed, calibration, accept, settings.target_fmr, limits_from(settings)
                )
            )
    return SelfCalibration(channels, settings.target_fmr, len(population.ids))


def refresh_self_calibration(
    session: Session,
    vault: Vault,
    settings: Settings,
    model_version: str,
    scorer: Scorer,
    policy: DecisionPolicy,
    now: datetime,
) -> SelfCalibrationSnapshot | None:
    """Fit on the population as it is now; a new snapshot when the fit changed, else None."""
    cohort = CohortCache(vault).current(session, model_version)
    population = read_population(session, vault, settings, model_version)
    fitted = fit_population(population, cohort, scorer, policy, settings)
    latest = latest_snapshot(session, SelfCalibrationSnapshot, model_version)
    if latest is not None and latest.version == fitted.version:
        return None
    snapshot = SelfCalibrationSnapshot(
        model_version=model_version,
        version=fitted.version,
        cohort_snapshot_id=cohort.snapshot_id,
        body=fitted.to_dict(),
        created_at=now,
    )
    return add_snapshot(session, snapshot, KEEP_FITS)


class SelfCalibrationCache:
    """Per process: the newest self-calibration of each model version, looked up at most every `poll_s`."""

    def __init__(self, poll_s: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._poll_s = poll_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int | None, SelfCalibration | None]] = {}
        self._checked_at: dict[str, float] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = {}

    def current(self, session: Session, model_version: str) -> SelfCalibration | None:
        now = self._monotonic()
        with self._lock:
            held = self._held.get(model_version)
            if held is not None and now - self._checked_at.get(model_version, float("-inf")) < self._poll_s:
                return held[1]
        latest_id = session.scalar(
            select(func.max(SelfCalibrationSnapshot.id)).where(SelfCalibrationSnapshot.model_version == model_version)
        )
        if held is None or held[0] != latest_id:
            row = None if latest_id is None else session.get(SelfCalibrationSnapshot, latest_id)
            held = (latest_id, None if row is None else SelfCalibration.from_dict(row.body))
        with self._lock:
            self._held[model_version] = held
            self._checked_at[model_version] = now
        return held[1]

    def held(self) -> dict[str, dict[str, object]]:
        """For /readyz: which fit each model version's calls are corrected with."""
        with self._lock:
            return {
                version: {
                    "snapshot": sid,
                    "version": None if fit is None else fit.version,
                    "speakers": None if fit is None else fit.n_speakers,
                }
                for version, (sid, fit) in self._held.items()
            }
