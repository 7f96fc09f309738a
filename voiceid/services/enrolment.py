"""Enrolment: audio -> enrolment embeddings -> a voiceprint once there is enough net speech.

Two transactions per utterance: a short read before inference and the write after it, so no
database lock is held while the model runs; a step that raises has changed nothing stored (a fraud
refusal is raised after its review item committed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from voiceid.audio.quality import QualityReport
from voiceid.engine import EmbeddedUtterance
from voiceid.enrolment.session import progress
from voiceid.enrolment.views import phone_voiceprint
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.adaptation import Adaptation
from voiceid.services.cohort import follow_enrolment
from voiceid.services.serving import ServingContext
from voiceid.services.speakers import Speakers
from voiceid.services.views import UNUSABLE_AUDIO, EnrolmentStep, NextStep, SpeakerView
from voiceid.statuses import ReviewKind, SpeakerStatus
from voiceid.storage import repositories as repo
from voiceid.storage.models import Speaker
from voiceid.verify.cohort import WIDEBAND


def next_step(status: SpeakerStatus) -> NextStep:
    """What the IVR should do after this step."""
    if status == SpeakerStatus.REVIEW_REQUIRED:
        return NextStep.WAIT_FOR_REVIEW
    if status == SpeakerStatus.ENROLLED:
        return NextStep.DONE
    return NextStep.SEND_MORE_AUDIO


def check_consented(speaker: Speaker) -> None:
    if speaker.status == SpeakerStatus.OPTED_OUT or not speaker.consent_granted:
        raise VoiceIdError(
            ErrorCode.CONSENT_REQUIRED,
            "the speaker has opted out; record a new consent (PUT the speaker) before enrolling again",
        )


class Enrolment:
    def __init__(
        self, ctx: ServingContext, speakers: Speakers, on_cohort_change: Callable[[], None] | None = None
    ) -> None:
        self.ctx = ctx
        self.speakers = speakers
        # this process's cohort cache looks again at once (other replicas within their poll interval)
        self.on_cohort_change = on_cohort_change
        self.adaptation = Adaptation(ctx)

    def cohort_follows(self, session: Session, model_version: str) -> None:
        """A small population's cohort takes the new voiceprint at once (population.follow_enrolment)."""
        settings = self.ctx.settings
        if settings.score_norm == "none" or settings.cohort_source != "population":
            return
        if follow_enrolment(session, model_version, settings.cohort_size, self.ctx.now()) and self.on_cohort_change:
            self.on_cohort_change()

    def add_audio(self, speaker_id: str, data: bytes, content_type: str | None) -> EnrolmentStep:
        ctx = self.ctx
        with ctx.db.transaction() as session:
            check_consented(self.speakers.load(session, speaker_id))
        utterance = ctx.analyse(data, content_type)
        view = self._phone_view(data, content_type, utterance)
        with ctx.db.transaction() as session:
            # Re-read under lock: the speaker may have opted out or been deleted during inference.
            speaker = self.speakers.load(session, speaker_id, for_update=True)
            check_consented(speaker)
            # Raises only on a replay; the countermeasure alone never refuses a file (services/pad_checks.py).
            cm = ctx.pad.check_enrolment(session, speaker, utterance)
            version = utterance.model_version
            # A refusal by the fraud checks is raised after this transaction commits: the review
            # item recording it must stay even though the enrolment step does not.
            fraud = ctx.fraud.screen_enrolment(session, speaker, utterance.vector, version, utterance.quality.channel)
            if fraud.refusal is None:
                repo.add_enrolment_embedding(
                    session,
                    ctx.cipher,
                    speaker,
                    utterance.vector,
                    version,
                    utterance.quality.net_speech_s,
                    {**utterance.quality.to_dict(), **cm.stored_fields()},
                    phone_view=view,
                )
                ctx.pad.keep_enrolment(session, speaker, utterance)
            required = ctx.settings.enrol_min_speech_s
            # Flagged files stay out of the voiceprint while the enrolment as a whole is in doubt; past
            # VOICEID_CM_ENROL_MAX_FLAGGED of them it is built from all its audio and held for review.
            state = progress(repo.enrolment_samples(session, ctx.cipher, speaker, version, cm.doubtful), required)
            held_by_cm = False
            if state.voiceprint is None and cm.doubtful and cm.n_flagged >= ctx.settings.cm_enrol_max_flagged:
                state = progress(repo.enrolment_samples(session, ctx.cipher, speaker, version), required)
            if state.voiceprint is not None and fraud.refusal is None:
                repo.set_voiceprint(session, ctx.cipher, speaker, state.voiceprint, version)
                phone = phone_voiceprint(repo.enrolment_channel_samples(session, ctx.cipher, speaker, version))
                repo.set_phone_voiceprint(session, ctx.cipher, speaker, phone, version)
                # Adapted voiceprints are anchored to the enrolment ones: rebuilt on the new anchor.
                self.adaptation.rebuild_all(session, speaker)
                speaker.voiceprint_used_at = ctx.now()  # the retention clock starts (services/retention.py)
                held = ctx.fraud.check_duplicates(session, speaker, state.voiceprint, version, fraud)
                held_by_cm = fraud.refusal is None and ctx.pad.hold_doubtful(session, speaker, cm) is not None
                held = SpeakerStatus.REVIEW_REQUIRED if held_by_cm else held
                if speaker.status != SpeakerStatus.REVIEW_REQUIRED:  # only an analyst releases a hold
                    speaker.status = held or SpeakerStatus.ENROLLED
                if speaker.status == SpeakerStatus.ENROLLED:
                    session.flush()
                    self.cohort_follows(session, version)
            speaker.updated_at = ctx.now()
            step = EnrolmentStep(
                status=speaker.status,
                net_speech_s=round(state.net_speech_s, 3),
                required_speech_s=state.required_speech_s,
                quality=utterance.quality.to_dict(),
                # SPOOF_SUSPECTED: this file is kept out of the voiceprint for now, or the enrolment is held.
                reasons=fraud.reasons + ([ReviewKind.SPOOF_SUSPECTED] if held_by_cm or not cm.used else []),
                watchlist_hits=[h.to_dict() for h in fraud.watchlist_hits],
                countermeasure=cm.to_dict(),
                next_step=next_step(speaker.status),
            )
        if fraud.refusal is not None:
            raise fraud.refusal
        return step

    def _phone_view(
        self, data: bytes, content_type: str | None, utterance: EmbeddedUtterance
    ) -> npt.NDArray[np.float32] | None:
        """The embedding of wideband enrolment audio's G.711 view (`voiceid.enrolment.views`), None
        for phone audio, with the setting off, or when the view leaves too little speech to embed."""
        if not self.ctx.settings.enrol_phone_view or utterance.quality.channel != WIDEBAND:
            return None
        try:
            view = self.ctx.pool.run(self.ctx.engine.embed_phone_view, data, content_type)
        except VoiceIdError as exc:
            if exc.code in UNUSABLE_AUDIO:
                return None  # the utterance still enrols; phone calls score it by its own embedding
            raise
        return view.vector

    def check_can_enrol(self, speaker_id: str) -> SpeakerView:
        """Raise unless the speaker exists and has consented; a stream checks before taking audio."""
        with self.ctx.db.transaction() as session:
            speaker = self.speakers.load(session, speaker_id)
            check_consented(speaker)
            return self.speakers.view(session, speaker)

    def measure_speech(self, data: bytes, content_type: str | None) -> QualityReport:
        """Net speech and quality of audio without embedding it (enrolment stream progress)."""
        front_end = self.ctx.engine.front_end
        return self.ctx.pool.run(lambda: front_end.analyse(front_end.decode(data, content_type))[2])
