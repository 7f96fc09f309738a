"""Encryption at rest for embeddings and voiceprints (AES-256-GCM).

Each blob is bound to its row and model version through the associated data, so a ciphertext
copied into another row, or relabelled with another model version, fails to decrypt instead of
silently scoring against the wrong person.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE_NAME = "encryption.key"


class DecryptionError(Exception):
    """A stored blob does not decrypt under this key with this associated data."""


def decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode() + b"==")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the encryption key must be url-safe base64") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"the encryption key must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def generate_key_text() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode().rstrip("=")


def load_or_create_key_file(path: Path) -> bytes:
    """The key from `path`, creating it (mode 0600, never overwritten) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together cannot both write a key and disagree on it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return decode_key(path.read_text())
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key_text() + "\n")
    return decode_key(path.read_text())


def associated_data(kind: str, row_id: str, model_version: str) -> bytes:
    return f"voiceid|{kind}|{row_id}|{model_version}".encode()


class Cipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"AES-256 needs a {KEY_BYTES}-byte key")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError("stored biometric data failed authentication") from exc

    def encrypt_vector(self, vector: npt.NDArray[np.floating], aad: bytes) -> bytes:
        return self.encrypt(np.asarray(vector, dtype="<f4").tobytes(), aad)

    def decrypt_vector(self, blob: bytes, aad: bytes) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.decrypt(blob, aad), dtype="<f4").astype(np.float32)
