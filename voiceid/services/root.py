"""The composition root of a serving process: it builds the shared things once (database, vault,
model, inference pool, caches, decision data) into a `ServingContext` and hands it to the small
services the adapters call:

- `speakers`: consent, status, opt-out, reset, erasure, unlock (voiceid/services/speakers.py);
- `enrolment`: audio -> voiceprint (voiceid/services/enrolment.py);
- `verifications`: probe -> decision and score-log row, stream previews (voiceid/services/verification.py);
- `score_log`: logged decisions read back (voiceid/services/score_log.py); `keys`: API keys (services/api_keys.py);
- `desk`: the fraud analyst's watchlist, review queue and linked calls (services/fraud_desk.py).

The telephony adapter's call registry is built by the adapters from `ctx` and `speakers`
(telephony_adapter/call_registry.py), so that nothing here points up at an adapter.

The HTTP API, the CLI and the telephony streams go through these; none talks to the engine or the
database on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from voiceid.config import Settings
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.inference import InferencePool
from voiceid.models.registry import resolve_service_backend
from voiceid.services.api_keys import ApiKeys
from voiceid.services.cohort import CohortCache, refresh_all_cohorts
from voiceid.services.context import AppContext
from voiceid.services.enrolment import Enrolment
from voiceid.services.fraud_checks import FraudChecks
from voiceid.services.fraud_desk import FraudDesk
from voiceid.services.pad_checks import PadChecks
from voiceid.services.score_log import ScoreLog
from voiceid.services.serving import ServingContext
from voiceid.services.speakers import Speakers
from voiceid.services.upgrade import upgrade
from voiceid.services.verification import Verifications
from voiceid.services.views import ServiceCounters
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database
from voiceid.storage.envelope_upgrade import upgrade_legacy_blobs
from voiceid.storage.keys import Vault
from voiceid.storage.models import utcnow
from voiceid.verify.decision import Thresholds
from voiceid.verify.policy import DecisionPolicy, build_policy, build_scorer
from voiceid.verify.scorer import Scorer


class VoiceIdService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        engine: Engine,
        cipher: Vault,
        pool: InferencePool,
        clock: Callable[[], datetime] = utcnow,
        counters: ServiceCounters | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        cipher.bind(db.sessions)  # erasures destroy the data key inside their own transaction
        # The checks read the time through the context, so swapping `clock` later reaches them.
        fraud = FraudChecks(settings, cipher, lambda: self.clock())
        pad = PadChecks(settings, cipher, lambda: self.clock(), getattr(engine, "cm_version", None))
        self.ctx = ServingContext(
            settings,
            db,
            cipher,
            clock,
            engine=engine,
            pool=pool,
            fraud=fraud,
            pad=pad,
            counters=counters or ServiceCounters(),
        )
        # Cohorts and calibration are loaded once; a missing or mismatched one fails start-up
        # rather than letting the service decide on thresholds that do not fit its scores.
        self.scorer = scorer or build_scorer(settings, engine.model_version)
        self.policy: DecisionPolicy = build_policy(settings, self.scorer)
        self.speakers = Speakers(self.ctx)
        cohort = CohortCache(cipher, settings.change_poll_s)
        self.enrolment = Enrolment(self.ctx, self.speakers, on_cohort_change=cohort.invalidate)
        self.verifications = Verifications(self.ctx, self.speakers, self.scorer, self.policy, cohort)
        self.challenges = self.verifications.challenges  # spoken challenges (issue 22): issue, recognise, settle
        self.adaptation = self.verifications.adaptation  # voiceprints adapted with accepted calls (issue 19)
        self.score_log = ScoreLog(db)
        self.keys = ApiKeys(db, lambda: self.clock(), settings.api_key_touch_interval_s)
        self.desk = FraudDesk(self.ctx)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> VoiceIdService:
        context = AppContext.from_settings(settings)  # refuses per-host secrets on PostgreSQL
        if settings.upgrade_on_start:
            # migrations + admin-key bootstrap (api_keys.bootstrap_admin), under a database lock
            upgrade(context.db, settings)
        upgrade_legacy_blobs(context.db, context.cipher)
        if engine is None:
            with context.db.transaction() as session:
                enrolled = repo.voiceprint_versions(session)
            choice = resolve_service_backend(settings.inference_backend, settings.model_dir, enrolled)
            settings = settings.model_copy(update={"inference_backend": choice.backend})
        return cls(
            settings,
            context.db,
            engine or Engine.from_settings(settings),
            context.cipher,
            InferencePool(settings.inference_workers, settings.inference_queue),
        )

    # The shared parts, for the adapters that need one (metrics, readiness, the fraud desk).
    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def cipher(self) -> Vault:
        return self.ctx.cipher

    @property
    def engine(self) -> Engine:
        return self.ctx.engine

    @property
    def pool(self) -> InferencePool:
        return self.ctx.pool

    @property
    def counters(self) -> ServiceCounters:
        return self.ctx.counters

    @counters.setter
    def counters(self, counters: ServiceCounters) -> None:
        self.ctx.counters = counters

    @property
    def fraud(self) -> FraudChecks:
        return self.ctx.fraud

    @property
    def pad(self) -> PadChecks:
        return self.ctx.pad

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ctx.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.ctx.clock = clock

    def close(self) -> None:
        self.ctx.pool.shutdown()
        self.ctx.db.dispose()
        self.ctx.cipher.close()

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        """Audio -> the call's evidence on the bounded inference pool (OVERLOADED when it is full).
        `embed` means one thing in voiceid: speech -> vector (`models.embedder`); this is the whole analysis."""
        return self.ctx.analyse(data, content_type)

    @property
    def cohort(self) -> CohortCache:
        """The population cohort the verifications normalise with (readiness reports what it holds)."""
        return self.verifications.cohort

    @property
    def thresholds(self) -> Thresholds:
        """The phone channel's threshold pair (what the review page draws)."""
        return self.policy.thresholds(None).thresholds

    def refresh_cohort(self) -> bool:
        """Take a new cohort snapshot where the enrolled population's sample changed: the worker's job,
        run now (tests, `voiceid cohort refresh`)."""
        with self.db.transaction() as session:
            changed = refresh_all_cohorts(session, self.settings.cohort_size, self.clock()) > 0
        self.cohort.invalidate()
        return changed
