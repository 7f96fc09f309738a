"""The speaker's side of the data: the consent ledger and the retention of voiceprints (issue 10)."""
