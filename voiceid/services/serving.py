"""What the serving process builds once and hands to its small services (speakers, enrolment,
verifications): the worker's `AppContext` plus the model, the inference pool and the fraud and
presentation-attack checks. DESIGN.md: one context, several services."""

from __future__ import annotations

from dataclasses import dataclass, field

from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.inference import InferencePool
from voiceid.services.context import AppContext
from voiceid.services.fraud_checks import FraudChecks
from voiceid.services.pad_checks import PadChecks
from voiceid.services.views import ServiceCounters


@dataclass(kw_only=True)
class ServingContext(AppContext):
    """An `AppContext` (settings, database, vault, swappable clock), so the worker's jobs run on it
    as they are (`voiceid purge`, the fraud desk's purge, the in-process worker on SQLite)."""

    engine: Engine
    pool: InferencePool
    fraud: FraudChecks
    pad: PadChecks
    counters: ServiceCounters = field(default_factory=ServiceCounters)

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def analyse(self, data: bytes, content_type: str | None, defer_cm: bool = False) -> EmbeddedUtterance:
        """Audio -> the call's evidence (quality, embedding, countermeasure, fingerprint) on the bounded
        inference pool (OVERLOADED when it is full). `defer_cm`
        leaves the countermeasure for `complete_cm` (only the product engine defers; others score it)."""
        started = self.now()
        if defer_cm and isinstance(self.engine, Engine):
            utterance = self.pool.run(self.engine.analyse, data, content_type, True)
        else:
            utterance = self.pool.run(self.engine.analyse, data, content_type)
        self.counters.on_inference((self.now() - started).total_seconds())
        return utterance

    def complete_cm(self, utterance: EmbeddedUtterance, needed: bool) -> EmbeddedUtterance:
        """Settle a deferred countermeasure: score it on the pool when `needed`, else mark it skipped."""
        if not utterance.cm_pending or not isinstance(self.engine, Engine):
            return utterance
        if not needed:
            return Engine.without_cm(utterance)
        return self.pool.run(self.engine.with_cm, utterance)
