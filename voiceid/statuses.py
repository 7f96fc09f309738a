"""The statuses stored in the database, as enums: a module of its own (no imports) so that the tables
(storage/models.py) and the domain views (views.py) can both use them."""

from enum import StrEnum


class ReviewKind(StrEnum):
    """What put an item on the analyst's review queue."""

    DUPLICATE_IDENTITY = "DUPLICATE_IDENTITY"  # the same voice enrolled under another identity
    WATCHLIST_MATCH = "WATCHLIST_MATCH"  # an enrolment voice matched the watchlist
    LINKED_VOICE = "LINKED_VOICE"  # one voice heard on several identities within days
    # The countermeasure doubts the enrolment as a whole (its pooled score is below threshold).
    SPOOF_SUSPECTED = "SPOOF_SUSPECTED"


class ReviewStatus(StrEnum):
    OPEN = "OPEN"
    REFUSED = "REFUSED"  # the enrolment was refused outright (VOICEID_*_ACTION=refuse); kept for the record
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CLOSED = "CLOSED"  # the speaker was erased while the item was open


class SpeakerStatus(StrEnum):
    ENROLLING = "ENROLLING"
    ENROLLED = "ENROLLED"
    OPTED_OUT = "OPTED_OUT"
    REVIEW_REQUIRED = "REVIEW_REQUIRED"  # voiceprint built but held: it matches another speaker's
    EXPIRED = "EXPIRED"  # voiceprint erased after going unused for the retention period (services/retention.py)


class CallMode(StrEnum):
    """What a bound telephone call does with its audio."""

    VERIFY = "verify"
    ENROL = "enrol"


class CallStatus(StrEnum):
    BOUND = "BOUND"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"


class DeliveryStatus(StrEnum):
    """A webhook outbox row."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"  # gave up after webhook_max_attempts, or the target became forbidden


class CmCheck(StrEnum):
    """What the spoofing countermeasure did on a scored verification (score log `cm_check`; null when
    the CM is off or nothing was scored)."""

    PASSED = "PASSED"  # scored at or above its channel's threshold
    FLAGGED = "FLAGGED"  # scored below it: SPOOF_SUSPECTED, never ACCEPT
    SKIPPED = "SKIPPED"  # not run: the call was REJECT without it, so its answer could not change anything


class AdaptationState(StrEnum):
    """What a verification did to its speaker's voiceprint (score log `adaptation`; null: nothing)."""

    ADAPTED = "ADAPTED"  # the call was kept to adapt the voiceprint of its channel (enrolment/adaptation.py)
    REVERTED = "REVERTED"  # it had adapted it, and was removed since (an analyst, a later flag, retention)
