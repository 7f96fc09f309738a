"""The spoken-challenge recogniser on real digit strings (dev_8k, native 8 kHz FSDD speakers), its
model files' hashes, and the pure challenge step of the decision."""

from __future__ import annotations

import csv
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.challenge import sphinx, whisper
from voiceid.challenge.policy import (
    CHALLENGE_ID,
    ChallengeCheck,
    ChallengePolicy,
    ChallengeStatus,
    apply_challenge,
    at_risk,
    new_challenge_id,
    new_digits,
    prompt_words,
    spoken_prompt,
)
from voiceid.challenge.recogniser import DigitRecogniser, RecogniserEngine, digits_of, words_of
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.verify import lockout
from voiceid.verify.decision import Decision, Outcome, Reason


@pytest.fixture(scope="module")
def recogniser() -> DigitRecogniser:
    return DigitRecogniser()


@pytest.fixture(scope="module")
def digit_rows(settings: Settings) -> list[tuple[Path, str, str]]:
    """(path, digits, speaker) of every dev_8k row."""
    manifest = settings.dev_data_dir / "dev_8k" / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"dev_8k not found at {manifest}; set VOICEID_DEV_DATA_DIR to ../shared/data")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(manifest.parent / r["path"], "".join(r["text"].split()), r["speaker_id"]) for r in rows]


# --- model files ------------------------------------------------------------------------------


def test_whisper_model_files_are_hash_checked_before_loading(tmp_path: Path) -> None:
    """The service's engine: the packaged files load; a flipped byte or a missing file is refused
    by name before the runtime reads anything."""
    copy = tmp_path / "whisper"
    copy.mkdir()
    for name, path in whisper.default_whisper_files().items():
        (copy / name).symlink_to(path)
    assert set(whisper.WHISPER_FILES) == {
        "model.bin.part1",
        "model.bin.part2",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    DigitRecogniser(model_dir=copy)  # an intact set loads

    (copy / "vocabulary.json").unlink()
    vocabulary = bytearray(whisper.default_whisper_files()["vocabulary.json"].read_bytes())
    vocabulary[-2] ^= 0x01
    (copy / "vocabulary.json").write_bytes(bytes(vocabulary))
    with pytest.raises(VoiceIdError) as corrupt:
        DigitRecogniser(model_dir=copy)
    assert corrupt.value.code is ErrorCode.MODEL_FILE_CORRUPT
    assert corrupt.value.details["file"].endswith("vocabulary.json")

    (copy / "vocabulary.json").unlink()
    with pytest.raises(VoiceIdError) as missing:
        DigitRecogniser(model_dir=copy)
    assert missing.value.code is ErrorCode.MODEL_FILE_MISSING


def test_halves_of_the_whisper_model_must_join_to_the_pinned_file(tmp_path: Path) -> None:
    """Each half is hashed, and so is the joined model.bin: halves swapped for each other fail."""
    files = whisper.default_whisper_files()
    swapped = dict(files)
    swapped["model.bin.part1"], swapped["model.bin.part2"] = files["model.bin.part2"], files["model.bin.part1"]
    with pytest.raises(VoiceIdError) as wrong:
        whisper.verify_whisper_files(swapped)
    assert wrong.value.code is ErrorCode.MODEL_FILE_CORRUPT


def test_pocketsphinx_model_files_are_hash_checked_before_loading(tmp_path: Path) -> None:
    source = sphinx.default_model_dir()
    copy = tmp_path / "en-us"
    shutil.copytree(source, copy)
    DigitRecogniser(model_dir=copy, engine=RecogniserEngine.POCKETSPHINX)  # an intact copy loads

    means = bytearray((copy / "means").read_bytes())
    means[-1] ^= 0xFF
    (copy / "means").write_bytes(bytes(means))
    with pytest.raises(VoiceIdError) as corrupt:
        DigitRecogniser(model_dir=copy, engine=RecogniserEngine.POCKETSPHINX)
    assert corrupt.value.code is ErrorCode.MODEL_FILE_CORRUPT
    assert corrupt.value.details["file"].endswith("means")
    assert set(sphinx.MODEL_FILES) >= {"mdef", "means", "variances", "sendump", "transition_matrices", "feat.params"}


# --- recognition on real recordings ------------------------------------------------------------


@pytest.mark.devdata
def test_recorded_digit_strings_pass_their_own_prompt_and_fail_others(
    recogniser: DigitRecogniser, digit_rows: list[tuple[Path, str, str]], settings: Settings
) -> None:
    """Strings of a speaker the threshold was not fitted on (jackson), at the shipped threshold:
    every one passes its own prompt and none passes another string's digits."""
    rows = [r for r in digit_rows if r[2] == "fsdd_jackson"][:5]
    threshold = settings.challenge_threshold
    for path, text, _ in rows:
        samples, rate = sf.read(path, dtype="float32")
        others = [t for _, t, _ in rows if t != text][:3]
        genuine, *mismatched = recogniser.recognise_many(samples, rate, [text, *others])
        assert genuine.passes(threshold), (text, genuine)
        assert not any(m.passes(threshold) for m in mismatched), (text, [(m.prompt, m.score) for m in mismatched])
        assert genuine.heard.isdigit() or genuine.heard == ""
        assert genuine.score > max(m.score for m in mismatched)


@pytest.mark.devdata
def test_through_g711_the_prompt_still_decides(
    recogniser: DigitRecogniser, digit_rows: list[tuple[Path, str, str]], settings: Settings
) -> None:
    from voiceid.audio import g711

    path, text, _ = next(r for r in digit_rows if r[2] == "fsdd_nicolas")
    samples, rate = sf.read(path, dtype="float32")
    phone = g711.decode(g711.encode(samples, "ulaw"), "ulaw")
    genuine, other = recogniser.recognise_many(phone, rate, [text, "".join(reversed(text))])
    assert genuine.passes(settings.challenge_threshold) and not other.passes(settings.challenge_threshold)


@pytest.mark.devdata
def test_speech_outside_the_grammar_does_not_pass(
    recogniser: DigitRecogniser, dev_files: dict[str, list[Path]], settings: Settings
) -> None:
    """A read English sentence (no digits) against digit prompts: a body the grammar cannot match."""
    speaker = sorted(dev_files)[0]
    samples, rate = sf.read(dev_files[speaker][0], dtype="float32")
    samples = samples[: rate * 5]
    for prompt in ("471902", "000000", "123456"):
        result = recogniser.recognise(samples, rate, prompt)
        assert not result.passes(settings.challenge_threshold), (prompt, result)


def test_silence_and_noise_do_not_pass(recogniser: DigitRecogniser, settings: Settings) -> None:
    rng = np.random.default_rng(0)
    for samples in (np.zeros(8000 * 3, np.float32), (0.05 * rng.standard_normal(8000 * 3)).astype(np.float32)):
        assert not recogniser.recognise(samples, 8000, "471902").passes(settings.challenge_threshold)


def test_audio_longer_than_the_window_cannot_pass(recogniser: DigitRecogniser) -> None:
    """Only 30 s are heard: a longer probe is not checked rather than checked on its start."""
    result = recogniser.recognise(np.zeros(8000 * 31, np.float32), 8000, "471902")
    assert result.score == -math.inf and not result.passes(-1e9)


def test_prompts_must_be_digits(recogniser: DigitRecogniser) -> None:
    with pytest.raises(ValueError):
        recogniser.recognise(np.zeros(8000, np.float32), 8000, "12a4")


def test_transcripts_are_read_as_digits() -> None:
    assert whisper.digits_in(" 4, 7, 1, 9, 0, 2.") == "471902"
    assert whisper.digits_in(" Two, seven, oh, 935-069") == "270935069"
    assert whisper.digits_in(" Thank you.") == ""
    assert whisper.renderings("407") == [" 4, 0, 7.", " 407.", " 4 0 7."]


def test_log_mel_matches_whisper_s_front_end() -> None:
    """A 1 kHz tone lands in the mel band around 1 kHz; features are 80 x 3000, zero-padded."""
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    features = whisper.log_mel(tone)
    assert features.shape == (80, 3000)
    assert not features[:, 200:].any()  # past the audio: padding, as Whisper was trained
    peak_band = int(np.argmax(features[:, 50]))
    centres = np.argmax(whisper._MEL, axis=1) * 16000 / 400
    assert abs(centres[peak_band] - 1000) < 80


# --- prompts ------------------------------------------------------------------------------------


def test_prompts_are_random_digits_and_ids_are_128_bits() -> None:
    prompts = {new_digits(6) for _ in range(200)}
    assert all(len(p) == 6 and p.isdigit() for p in prompts)
    assert len(prompts) > 190  # 10^6 possibilities: repeats are rare
    ids = {new_challenge_id() for _ in range(100)}
    assert len(ids) == 100 and all(CHALLENGE_ID.match(i) for i in ids)
    assert spoken_prompt("471902") == "4 7 1 9 0 2"
    assert prompt_words("471902") == "four seven one nine zero two"
    assert digits_of(words_of("0918273645")) == "0918273645"
    assert digits_of("zero(2) one") == "01"


# --- the challenge step of the decision (pure) --------------------------------------------------

ACCEPT = Outcome(Decision.ACCEPT, (Reason.SCORE_ABOVE_ACCEPT_THRESHOLD,))
REJECT = Outcome(Decision.REJECT, (Reason.SCORE_BELOW_REJECT_THRESHOLD,))
BETWEEN = Outcome(Decision.INCONCLUSIVE, (Reason.SCORE_BETWEEN_THRESHOLDS,))


def check(status: ChallengeStatus) -> ChallengeCheck:
    return ChallengeCheck("0" * 32, status, "471902", "471902", 0.5)


def test_a_failed_challenge_is_never_accept() -> None:
    for policy in ChallengePolicy:
        for outcome in (ACCEPT, REJECT, BETWEEN):
            for status in ChallengeStatus:
                after = apply_challenge(outcome, check(status), policy, risky=False)
                reason = Reason[f"CHALLENGE_{status.value}"]
                assert after.reasons == (*outcome.reasons, reason)
                if status is ChallengeStatus.PASSED:
                    assert after.decision is outcome.decision  # the voice still has to match
                else:
                    assert after.decision is not Decision.ACCEPT
                if status is ChallengeStatus.MISMATCH:
                    assert after.decision is Decision.REJECT


def test_on_risk_policy_arithmetic() -> None:
    # The countermeasure passed the call (score >= threshold) but within the band: risky.
    assert at_risk(cm_score=0.4, cm_threshold=0.0, band=0.5, linked=False)
    assert not at_risk(cm_score=0.5, cm_threshold=0.0, band=0.5, linked=False)  # exactly one band above
    assert not at_risk(cm_score=3.0, cm_threshold=0.0, band=0.5, linked=False)
    assert at_risk(cm_score=-1.2, cm_threshold=-1.0, band=0.0, linked=False)  # flagged is below any band
    assert at_risk(cm_score=None, cm_threshold=None, band=0.5, linked=True)  # a linked voice is risky
    assert not at_risk(cm_score=None, cm_threshold=None, band=0.5, linked=False)  # no CM, no link

    required = (*ACCEPT.reasons, Reason.CHALLENGE_REQUIRED)
    stepped_up = Outcome(Decision.INCONCLUSIVE, required)
    assert apply_challenge(ACCEPT, None, ChallengePolicy.ON_RISK, risky=True) == stepped_up
    assert apply_challenge(ACCEPT, None, ChallengePolicy.ON_RISK, risky=False) == ACCEPT
    assert apply_challenge(BETWEEN, None, ChallengePolicy.ON_RISK, risky=True) == BETWEEN  # only would-be ACCEPTs
    assert apply_challenge(ACCEPT, None, ChallengePolicy.OFF, risky=True) == ACCEPT
    assert apply_challenge(ACCEPT, None, ChallengePolicy.ALWAYS, risky=False).decision is Decision.INCONCLUSIVE
    assert Reason.CHALLENGE_REQUIRED in apply_challenge(BETWEEN, None, ChallengePolicy.ALWAYS, risky=False).reasons
    assert apply_challenge(REJECT, None, ChallengePolicy.ALWAYS, risky=True) == REJECT  # no free retry


def test_a_failed_challenge_weighs_on_lockout_as_set() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    weights = lockout.Weights(inconclusive=0.5, unusable=0.5, challenge_failed=2.5)
    state = lockout.after_attempt(lockout.LockState(), lockout.Attempt.CHALLENGE_FAILED, now, 5, 3600, weights)
    assert state.weight == 2.5 and state.locked_at is None
    state = lockout.after_attempt(state, lockout.Attempt.CHALLENGE_FAILED, now, 5, 3600, weights)
    assert state.weight == 5.0 and state.locked_at == now
