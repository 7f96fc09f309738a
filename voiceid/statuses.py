"""The statuses stored in the database, as enums: a module of its own (no imports) so that the tables
(storage/models.py) and the domain views (views.py) can both use them."""

from enum import StrEnum


class ReviewKind(StrEnum):
    """What put an item on the analyst's review queue."""

    DUPLICATE_IDENTITY = "DUPLICATE_IDENTITY"  # the same voice enrolled under another identity
    WATCHLIST_MATCH = "WATCHLIST_MATCH"  # an enrolment voice matched the watchlist
    LINKED_VOICE = "LINKED_VOICE"  # one voice heard on several identities within days


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
    EXPIRED = "EXPIRED"  # voiceprint erased after going unused for the retention period (privacy/retention.py)
