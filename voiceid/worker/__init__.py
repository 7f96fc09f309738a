"""`voiceid worker`: the singleton jobs (retention, webhook outbox, change-feed pruning, ...)."""
