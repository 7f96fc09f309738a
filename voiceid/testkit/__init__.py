"""Support code that tests/ and bench/ share: synthetic and hostile audio, throw-away PostgreSQL
databases, and the multi-replica topology with its hashing engine.

It lives in the package (not in tests/) so that bench/ never imports `tests.*`, and it is typed and
checked like the product. It is the top layer beside the CLI: it may import any part of voiceid and
nothing in voiceid imports it (import-linter's layer contract in pyproject.toml). No module here
imports pytest: a bench run has no test session, so unavailable services are reported as errors
that the tests' conftest turns into skips."""
