from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest

from voiceid.enrolment.session import EnrolmentSample, progress
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.inference import InferencePool
from voiceid.storage.crypto import (
    Cipher,
    DecryptionError,
    associated_data,
    decode_key,
    generate_key_text,
    load_or_create_key_file,
)
from voiceid.verify.vectors import build_voiceprint, cosine


def test_cipher_round_trip_and_binding():
    cipher = Cipher(decode_key(generate_key_text()))
    v = np.random.default_rng(0).standard_normal(192).astype(np.float32)
    aad = associated_data("voiceprint", "row-1", "model-a")
    blob = cipher.encrypt_vector(v, aad)
    assert v.tobytes() not in blob
    np.testing.assert_array_equal(cipher.decrypt_vector(blob, aad), v)
    for wrong in (associated_data("voiceprint", "row-2", "model-a"), associated_data("voiceprint", "row-1", "model-b")):
        with pytest.raises(DecryptionError):
            cipher.decrypt_vector(blob, wrong)
    with pytest.raises(DecryptionError):
        Cipher(decode_key(generate_key_text())).decrypt_vector(blob, aad)
    assert cipher.encrypt_vector(v, aad) != blob  # fresh nonce each time


def test_key_file_created_0600_and_reused(tmp_path):
    path = tmp_path / "sub" / "encryption.key"
    key = load_or_create_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key_file(path) == key and len(key) == 32


def test_bad_key_text():
    with pytest.raises(ValueError):
        decode_key("too-short")


def test_enrolment_progress_builds_the_same_voiceprint_as_eval():
    a, b = np.eye(192, dtype=np.float32)[:2]
    partial = progress([EnrolmentSample(a, 5.0)], 10.0)
    assert partial.voiceprint is None and partial.net_speech_s == 5.0
    done = progress([EnrolmentSample(a, 9.0), EnrolmentSample(b, 3.0)], 10.0)
    assert done.complete and done.net_speech_s == 12.0
    # The plain normalised mean, as `voiceid eval` builds voiceprints: equal cosine to both.
    assert cosine(a, done.voiceprint) == pytest.approx(cosine(b, done.voiceprint))
    np.testing.assert_allclose(done.voiceprint, build_voiceprint(np.stack([a, b])))


def test_inference_pool_bounds():
    pool = InferencePool(workers=1, queue=1)
    gate = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        gate.wait(10)
        return "done"

    results = []
    threads = [threading.Thread(target=lambda: results.append(pool.run(slow))) for _ in range(2)]
    threads[0].start()
    assert started.wait(10)
    threads[1].start()
    while pool.admitted < 2:
        threading.Event().wait(0.01)
    with pytest.raises(VoiceIdError) as err:
        pool.run(slow)
    assert err.value.code is ErrorCode.OVERLOADED
    gate.set()
    for t in threads:
        t.join(10)
    assert results == ["done", "done"] and pool.admitted == 0
    pool.shutdown()


def test_stored_statuses_load_as_enums_and_unknown_ones_are_refused(tmp_path):
    from sqlalchemy.exc import StatementError

    from voiceid.statuses import SpeakerStatus
    from voiceid.storage import repositories as repo
    from voiceid.storage.db import Database
    from voiceid.storage.models import utcnow

    db = Database(f"sqlite:///{tmp_path / 'enum.db'}")
    db.migrate()
    with db.transaction() as session:
        assert repo.insert_speaker_if_absent(session, "caller-1", SpeakerStatus.ENROLLING, utcnow())
    with db.transaction() as session:
        speaker = repo.get_speaker(session, "caller-1")
        assert speaker is not None and speaker.status is SpeakerStatus.ENROLLING
    with pytest.raises(StatementError, match="BOGUS"), db.transaction() as session:
        speaker = repo.get_speaker(session, "caller-1", for_update=True)
        assert speaker is not None
        speaker.status = "BOGUS"  # type: ignore[assignment]
    with db.transaction() as session:
        assert repo.get_speaker(session, "caller-1").status is SpeakerStatus.ENROLLING  # nothing stored
    db.dispose()
