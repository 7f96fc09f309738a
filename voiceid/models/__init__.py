"""The speaker-embedding model: verified files, export, and the inference backends."""
