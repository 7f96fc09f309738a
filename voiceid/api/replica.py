"""What one `serve` process adds to the service as a replica: the decision-data check against the
pins in the database, the in-process jobs on SQLite, and the readiness report."""

from __future__ import annotations

from dataclasses import dataclass, field

from voiceid.services.root import VoiceIdService
from voiceid.services.upgrade import check_decision_data
from voiceid.verify.versions import decision_versions
from voiceid.worker.jobs import JOBS
from voiceid.worker.runner import BackgroundWorker, Worker


@dataclass
class Replica:
    service: VoiceIdService
    versions: dict[str, str]
    jobs: BackgroundWorker | None = field(default=None)

    @classmethod
    def start(cls, service: VoiceIdService) -> Replica:
        settings = service.settings
        versions = decision_versions(service.scorer, service.policy)
        # Several replicas (PostgreSQL) must decide alike: a replica with other data refuses to start.
        check_decision_data(service.db, versions, strict=not settings.is_sqlite)
        # Load the population and the watchlist before taking traffic (the readiness probe fails until
        # then), so no caller waits for the first full load.
        with service.db.transaction() as session:
            service.fraud.voiceprints.sync(session)
            service.fraud.watchlist.sync(session)
        jobs = None
        if settings.jobs_in_process:
            jobs = BackgroundWorker(Worker(service.ctx, JOBS))
            jobs.start()
        return cls(service, versions, jobs)

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()

    def report(self) -> dict[str, object]:
        fraud = self.service.fraud
        return {
            # What `VOICEID_INFERENCE_BACKEND=auto` resolved to here, and the version its vectors carry
            # (replicas of one deployment must agree: the decision-data pins refuse one that differs).
            "inference_backend": str(self.service.settings.inference_backend),
            "model_version": self.service.engine.model_version,
            "revision": {"voiceprints": fraud.voiceprints.revision, "watchlist": fraud.watchlist.revision},
            # The persisted index snapshots the caches started from (storage/index_repo.py), if any.
            "index_snapshots": {
                name: {version: {"id": sid, "revision": rev} for version, (sid, rev) in cache.loaded_snapshots.items()}
                for name, cache in (("voiceprints", fraud.voiceprints), ("watchlist", fraud.watchlist))
            },
            "decision_data": self.versions,
            # The population cohort snapshot (voiceid/services/cohort.py), once a call has loaded it.
            "cohort_snapshot": self.service.cohort.held(),
            # The population's own correction of the calibration (voiceid/services/calibration.py), once loaded.
            "self_calibration": self.service.verifications.self_calibration.held(),
            "jobs_in_process": self.jobs is not None,
        }
