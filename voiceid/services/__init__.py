"""The use cases, each on the shared serving context (DESIGN.md): speakers and consent, enrolment,
verification (the whole decision, composed in `verification.py`), challenges, the score log, the
cohort and self-calibration, fraud checks and the analysts' desk, presentation-attack checks, API
keys and the audit trail. `root.py` composes them; the adapters (api/, telephony_adapter/, cli/)
call only these, and these call only the pure core below them."""
