"""What the serving process builds once and hands to its small services (speakers, enrolment,
verifications): the worker's `AppContext` plus the model, the inference pool and the fraud and
presentation-attack checks. DESIGN.md: one context, several services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from voiceid.antispoof.checks import PadChecks
from voiceid.config import Settings
from voiceid.context import AppContext
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.fraud.checks import FraudChecks
from voiceid.inference import InferencePool
from voiceid.storage.db import Database
from voiceid.storage.keys import Vault
from voiceid.storage.models import utcnow
from voiceid.views import ServiceCounters


@dataclass
class ServingContext:
    settings: Settings
    db: Database
    cipher: Vault  # the envelope vault: every biometric blob is sealed through it
    engine: Engine
    pool: InferencePool
    fraud: FraudChecks
    pad: PadChecks
    counters: ServiceCounters = field(default_factory=ServiceCounters)
    # Read through `now()` everywhere: tests (and the purge) swap the clock after start-up.
    clock: Callable[[], datetime] = field(default=utcnow)

    def now(self) -> datetime:
        return self.clock()

    def app_context(self) -> AppContext:
        """The model-free part, for the worker's jobs run in this process (`voiceid purge`, the
        fraud desk's purge): the same database, vault and (swappable) clock."""
        return AppContext(self.settings, self.db, self.cipher, self.now)

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def embed(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        """Audio -> embedding on the bounded inference pool (OVERLOADED when it is full)."""
        started = self.now()
        utterance = self.pool.run(self.engine.embed_bytes, data, content_type)
        self.counters.on_inference((self.now() - started).total_seconds())
        return utterance
