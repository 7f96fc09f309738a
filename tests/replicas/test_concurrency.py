"""Idempotent creates under concurrency, and caches synced by the database revision."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from sqlalchemy import event

from voiceid.statuses import CallMode
from voiceid.storage import changes
from voiceid.storage.crypto import generate_key_text
from voiceid.telephony_adapter.call_registry import CallRegistry
from voiceid.testkit.engines import ScriptedEngine, unit

THREADS = 8


def _race(fn: Callable[[int], object]) -> tuple[list[object], list[BaseException]]:
    barrier = threading.Barrier(THREADS)
    results: list[object] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results.append(fn(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def test_concurrent_first_puts_of_one_speaker_create_it_once(make_api):
    api = make_api()
    for round_ in range(3):
        ref = f"racer-{round_}"
        results, errors = _race(lambda i, ref=ref: api.service.speakers.put(ref, True, "v1", "phone"))
        assert errors == []
        assert sorted(created for _, created in results) == [False] * (THREADS - 1) + [True]  # type: ignore[misc]
        assert len({view.speaker_id for view, _ in results}) == 1  # type: ignore[misc]


def test_concurrent_puts_over_http_answer_201_once_and_200_otherwise(make_api):
    api = make_api()
    body = {"consent": {"granted": True, "text_version": "v1", "channel": "phone"}}
    results, errors = _race(
        lambda i: api.client.put("/v1/speakers/http-racer", json=body, headers=api.h("enrolment")).status_code
    )
    assert errors == [] and sorted(results) == [200] * (THREADS - 1) + [201]  # type: ignore[type-var]


def test_concurrent_binds_of_one_call_create_it_once(make_api):
    api = make_api()
    api.put_speaker("caller-1")
    registry = CallRegistry(api.service.ctx, api.service.speakers)
    call = uuid.uuid4()
    results, errors = _race(lambda i: registry.bind(call, "caller-1", CallMode.VERIFY, None, None))
    assert errors == []
    assert sorted(created for _, created in results) == [False] * (THREADS - 1) + [True]  # type: ignore[misc]


def _statements(api) -> list[str]:
    seen: list[str] = []
    event.listen(api.service.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_scored_call_reads_no_population_when_nothing_changed(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, score_norm="s-norm", cohort_source="population", population_min=0, change_poll_s=60.0)
    for i in range(20):
        api.seed_voiceprint(f"caller-{i}", unit(i))
    api.verify("caller-1", engine.register(b"warm", unit(1)))  # first call loads the population
    seen = _statements(api)
    api.verify("caller-1", engine.register(b"again", unit(1)))
    joined = "\n".join(seen).lower()
    assert "change_feed" not in joined and "voiceprint_model_version is not null" not in joined
    assert "change_counters" not in joined  # within the poll interval not even the counter is read


def test_changes_on_one_replica_reach_another_by_revision_only(make_api):
    engine = ScriptedEngine()
    key = SecretStr(generate_key_text())
    settings = {"encryption_key": key, "score_norm": "none", "change_poll_s": 0.0}
    a = make_api(engine=engine, **settings)
    b = make_api(engine=engine, **settings)
    a.seed_voiceprint("victim", unit(1))
    a.seed_voiceprint("other", unit(2))
    cache_b = b.service.fraud.voiceprints

    def members(api) -> set[str]:
        with api.service.db.transaction() as session:
            index, refs = api.service.fraud.voiceprints.current(session, engine.model_version, exclude_id="")
            return {refs[n.key] for n in index.search(unit(1), 10)[0]}

    assert members(b) == {"victim", "other"}
    held = cache_b.revision
    seen = _statements(b)
    assert members(b) == {"victim", "other"}
    assert not any("from speakers" in s.lower() for s in seen)  # nothing changed: the counter only
    # Opt-out (an erasure) on replica A: replica B drops the voiceprint at its next sync.
    r = a.client.post("/v1/speakers/victim/opt-out", headers=a.h("enrolment"))
    assert r.status_code == 200, r.text
    assert members(b) == {"other"}
    assert cache_b.revision is not None and held is not None and cache_b.revision > held
    speaker_reads = [s for s in seen if "from speakers" in s.lower()]
    assert speaker_reads and all("speakers.id in" in s.lower() for s in speaker_reads)  # only the changed ids


def test_a_rolled_back_change_never_enters_a_cache(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, score_norm="none", change_poll_s=0.0)
    api.seed_voiceprint("kept", unit(1))
    from voiceid.storage import repositories as repo

    with api.service.db.transaction() as session:  # the cache holds the committed population
        assert len(api.service.fraud.voiceprints.current(session, engine.model_version, exclude_id="")[0]) == 1

    with pytest.raises(RuntimeError), api.service.db.transaction() as session:
        speaker = repo.get_speaker(session, "kept", for_update=True)
        assert speaker is not None
        repo.erase_biometrics(session, speaker)
        assert changes.own_revision(session) is not None
        index, refs = api.service.fraud.voiceprints.current(session, engine.model_version, exclude_id="")
        assert len(index) == 1  # the uncommitted erasure is not applied to the shared index
        raise RuntimeError("roll back")
    with api.service.db.transaction() as session:
        index, refs = api.service.fraud.voiceprints.current(session, engine.model_version, exclude_id="")
        assert len(index) == 1 and set(refs.values()) == {"kept"}
