"""Spoken challenges: prompts the caller cannot predict, checked by an offline recogniser."""
