"""The singleton jobs `voiceid worker` runs. Registering a job is one line in JOBS: a name, a
function `(AppContext) -> int` doing one bounded tick, and its interval from the settings."""

from __future__ import annotations

from datetime import timedelta

from voiceid.errors import VoiceIdError
from voiceid.services.adaptation import Adaptation
from voiceid.services.calibration import refresh_self_calibration
from voiceid.services.cohort import refresh_all_cohorts
from voiceid.services.context import AppContext
from voiceid.services.retention import expire_unused_voiceprints, purge_attempts
from voiceid.storage import changes
from voiceid.storage.repositories import voiceprint_versions
from voiceid.verify.policy import build_policy, build_scorer
from voiceid.webhooks.outbox import deliver_due
from voiceid.worker.index_snapshots import JOB_NAME as INDEX_SNAPSHOT
from voiceid.worker.index_snapshots import snapshot_indexes
from voiceid.worker.registry import Job


def prune_change_feed(ctx: AppContext) -> int:
    with ctx.db.transaction() as session:
        return changes.prune(session, ctx.clock() - timedelta(seconds=ctx.settings.change_feed_retention_s))


def expire_voiceprints(ctx: AppContext) -> int:
    """Erase voiceprints unused for VOICEID_VOICEPRINT_RETENTION_DAYS (speakers answer EXPIRED)."""
    return expire_unused_voiceprints(ctx.db, ctx.clock(), ctx.settings.voiceprint_retention_days)


def sweep_alerted_adaptation(ctx: AppContext) -> int:
    """Calls held by an open linked-voice alert leave the voiceprints they adapted (services/adaptation.py)."""
    return Adaptation(ctx).revert_alerted()


def refresh_cohorts(ctx: AppContext) -> int:
    """A new score-normalisation cohort snapshot where the enrolled population's sample changed."""
    with ctx.db.transaction() as session:
        return refresh_all_cohorts(session, ctx.settings.cohort_size, ctx.clock())


def refit_self_calibration(ctx: AppContext) -> int:
    """Refit the self-calibration of every model version with enrolled voiceprints (verify/selfcal.py):
    the number of new fits stored (0 when the population's fit did not change)."""
    settings = ctx.settings
    if not settings.self_calibration:
        return 0
    with ctx.db.transaction() as session:
        versions = voiceprint_versions(session)
    stored = 0
    for version in versions:
        try:
            scorer = build_scorer(settings, version)
            policy = build_policy(settings, scorer)
        except VoiceIdError:
            continue  # no shipped cohort or calibration for this model version: nothing to correct
        if not scorer.calibrations:
            continue
        with ctx.db.transaction() as session:
            stored += (
                refresh_self_calibration(session, ctx.cipher, settings, version, scorer, policy, ctx.clock())
                is not None
            )
    return stored


JOBS: tuple[Job, ...] = (
    Job("retention-purge", purge_attempts, every=lambda s: s.purge_interval_s),
    Job("voiceprint-retention", expire_voiceprints, every=lambda s: s.purge_interval_s),
    Job("adaptation-alert-sweep", sweep_alerted_adaptation, every=lambda s: s.purge_interval_s),
    Job("webhook-outbox", deliver_due, every=lambda s: s.webhook_poll_s),
    Job("cohort-refresh", refresh_cohorts, every=lambda s: s.cohort_refresh_interval_s),
    Job("self-calibration", refit_self_calibration, every=lambda s: s.selfcal_interval_s),
    Job("change-feed-prune", prune_change_feed, every=lambda s: min(3600.0, s.change_feed_retention_s / 4)),
    Job(INDEX_SNAPSHOT, snapshot_indexes, every=lambda s: s.index_snapshot_interval_s),
)
