"""Voiceprints that follow the caller: what adapting the voiceprint with high-confidence accepted calls
does on the dev set (issue 19, item 3), with the product's rule (voiceid/enrolment/adaptation.py) and the
evaluation's scoring (voiceid/evaluation/regimes.py: the regime of a deployment with every dev speaker
enrolled, population AS-norm, the shipped calibration; no self-calibration shift).

Each speaker enrols on utterances 0-2 and then calls with utterances 3-9, one call per round, in order.
In every round each speaker's call is decided against their voiceprint as it is now; with adaptation,
a call that passes the guards (ACCEPT with LLR >= accept + margin, enough net speech, cosine to the
enrolment voiceprint >= floor; the countermeasure, replay, watchlist, links and challenge are taken as
passed: dev audio is bona fide and no other check is simulated) joins the voiceprint of its channel for
the next rounds. Impostor trials: in every round, every other speaker's call of that round against the
same (adapted) voiceprints. Reported: genuine ACCEPT on the later calls (rounds 2-7, and 4-7 once up to
three calls may have adapted) and impostor ACCEPT over the same rounds, with and without adaptation.

Adversarial: for every speaker, the other dev speaker whose enrolment voiceprint is the most similar (a
look-alike, the worst case) makes four calls that are all *taken as accepted* (the attacker got in some
other way), so only the rule's own bounds stand between them and the voiceprint: the cosine floor against
the enrolment voiceprint, the weight and count caps. Then the attacker's next three calls and the genuine
speaker's calls are decided against the poisoned voiceprint; compared with no adaptation and with a naive
rule (the calls added to the voiceprint as if they were enrolment audio). A second adversarial run holds
the attacker to the full guard: their calls must themselves be accepted with the margin.

Rows: wideband enrolment and G.711 calls (the service's phone-view voiceprint: `voiceid eval
--enrol-channel clean --channel g711-ulaw --phone-view`), G.711 -> G.711, clean -> clean, and wideband
enrolment with G.711 calls against the wideband voiceprint (the phone view off: phone calls then adapt a
phone voiceprint anchored to the wideband one).

Usage: python bench/adaptation.py [--rows 0,1,2] [--floors 0.3,0.4,0.5,0.6] [--out bench/out/adaptation.json]
Embeddings and net speech are cached under the data dir (computing them for the dev set takes minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.config import Settings, get_settings
from voiceid.enrolment.adaptation import AdaptationLimits, CallFacts, adapted_voiceprint, refusal_of
from voiceid.evaluation.embedders import speech_meter, voiceid_embedder
from voiceid.evaluation.protocol import Protocol, Utterance, build_protocol, read_manifest
from voiceid.evaluation.regimes import Regime, regime_for, regime_trials
from voiceid.evaluation.runner import EmbeddingCache, EvalRun, claimed_voiceprints, embed_run, voiceprints_of
from voiceid.models.registry import backend_model_version
from voiceid.services.adaptation import limits_from
from voiceid.statuses import CmCheck
from voiceid.verify.calibration import load_calibrations
from voiceid.verify.decision import Decision, decide_many
from voiceid.verify.policy import BUILTIN_CALIBRATION, channel_regimes
from voiceid.verify.vectors import build_voiceprint, cosine, cosine_matrix

FloatArray = npt.NDArray[np.float32]

# (label, enrolment channel, probe channel, phone-view voiceprint)
ROWS = (
    ("wideband -> G.711 (phone view)", "clean", "g711-ulaw", True),
    ("G.711 -> G.711", "g711-ulaw", "g711-ulaw", False),
    ("wideband -> wideband", "clean", "clean", False),
    ("wideband -> G.711, wideband voiceprint (VOICEID_ENROL_PHONE_VIEW=false)", "clean", "g711-ulaw", False),
)
POISON_CALLS = 4  # the attacker's calls taken as accepted; their next calls are the ones decided


def facts(decision: str, llr: float, regime: Regime, net_speech_s: float, same_channel: bool = True) -> CallFacts:
    """A dev call's guard facts: the decision and LLR as scored; every other check taken as passed."""
    return CallFacts(
        decision=Decision(decision),
        llr=float(llr),
        accept_threshold=regime.thresholds.accept,
        cm_check=CmCheck.PASSED,
        replay_suspected=False,
        watchlist_hit=False,
        linked=False,
        challenge_failed=False,
        net_speech_s=float(net_speech_s),
        same_channel=same_channel,
    )


def _decide(
    run: EvalRun, regime: Regime, settings: Settings, probes: list[Utterance], claimed: FloatArray | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.str_], npt.NDArray[np.float64], list[str]]:
    """LLRs and decisions of `probes` against every speaker's voiceprint (or `claimed`), as the service."""
    trials = regime_trials(run, regime, settings, Protocol(run.protocol.enrolment, probes), claimed)
    assert trials.probe_speech_s is not None
    speech = trials.probe_speech_s
    llr = regime.calibration.llrs(trials.scores, speech[:, None])
    decisions = decide_many(llr, regime.thresholds, speech[:, None], settings.verify_min_speech_s)
    return llr, decisions, speech, trials.speakers


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 6) if n else None


def sequence(
    run: EvalRun, regime: Regime, settings: Settings, limits: AdaptationLimits, adapt: bool, same_channel: bool = True
) -> dict[str, Any]:
    """The rounds of genuine calls; with `adapt`, each accepted call that passes the guards adapts."""
    speakers, voiceprints = voiceprints_of(run.protocol, run.vectors)
    anchors = claimed_voiceprints(run.protocol, speakers, voiceprints, run.claim_vectors)
    index = {s: i for i, s in enumerate(speakers)}
    calls = {s: [u for u in run.protocol.tests if u.speaker_id == s and u.utt_id in run.vectors] for s in speakers}
    rounds = max(len(c) for c in calls.values())
    current = anchors.copy()
    kept: dict[str, list[FloatArray]] = {s: [] for s in speakers}
    refusals: dict[str, int] = {}
    per_round = []
    anchor_cosines: list[float] = []
    for r in range(rounds):
        probes = [calls[s][r] for s in speakers if len(calls[s]) > r]
        llr, decisions, speech, order = _decide(run, regime, settings, probes, current if adapt else None)
        assert order == speakers
        owner = np.array([index[u.speaker_id] for u in probes])
        rows = np.arange(len(probes))
        genuine = decisions[rows, owner]
        impostor_mask = np.ones(decisions.shape, dtype=bool)
        impostor_mask[rows, owner] = False
        impostor = decisions[impostor_mask]
        per_round.append(
            {
                "round": r + 1,
                "genuine_n": int(genuine.size),
                "genuine_accept": int(np.count_nonzero(genuine == Decision.ACCEPT.value)),
                "impostor_n": int(impostor.size),
                "impostor_accept": int(np.count_nonzero(impostor == Decision.ACCEPT.value)),
            }
        )
        for i, u in enumerate(probes):
            s = u.speaker_id
            similarity = cosine(run.vectors[u.utt_id], anchors[index[s]])
            call = facts(str(genuine[i]), llr[i, owner[i]], regime, speech[i], same_channel)
            if call.decision is Decision.ACCEPT:
                anchor_cosines.append(similarity)
            if not adapt:
                continue
            refusal = refusal_of(call, similarity, limits)
            if refusal is None:
                kept[s].append(run.vectors[u.utt_id])
                current[index[s]] = adapted_voiceprint(anchors[index[s]], kept[s], limits)
            else:
                refusals[refusal.value] = refusals.get(refusal.value, 0) + 1
    later, last = per_round[1:], per_round[3:]

    def pooled(part: list[dict[str, int]]) -> dict[str, Any]:
        g = sum(p["genuine_accept"] for p in part), sum(p["genuine_n"] for p in part)
        i = sum(p["impostor_accept"] for p in part), sum(p["impostor_n"] for p in part)
        return {
            "genuine_accept": g[0],
            "genuine_n": g[1],
            "genuine_accept_rate": _rate(*g),
            "impostor_accept": i[0],
            "impostor_n": i[1],
            "impostor_accept_rate": _rate(*i),
        }

    cosines = np.array(anchor_cosines) if anchor_cosines else np.zeros(1)
    return {
        "adapt": adapt,
        "rounds": per_round,
        "calls_2_to_7": pooled(later),
        "calls_4_to_7": pooled(last),
        "adapting_calls": sum(len(k) for k in kept.values()),
        "speakers_adapted": sum(1 for k in kept.values() if k),
        "refusals": refusals,
        "accepted_cosine_to_enrolment_quantiles": {
            q: round(float(np.quantile(cosines, q)), 4) for q in (0.01, 0.05, 0.5)
        },
    }


def adversarial(
    run: EvalRun, regime: Regime, settings: Settings, limits: AdaptationLimits, floors: list[float]
) -> dict[str, Any]:
    """Look-alike attackers' calls against each speaker's voiceprint, taken as accepted (and then held to the
    full guard), against no adaptation and a naive unbounded rule."""
    speakers, voiceprints = voiceprints_of(run.protocol, run.vectors)
    anchors = claimed_voiceprints(run.protocol, speakers, voiceprints, run.claim_vectors)
    similarity = cosine_matrix(anchors, anchors)
    np.fill_diagonal(similarity, -np.inf)
    attacker = np.argmax(similarity, axis=1)
    calls = {s: [u for u in run.protocol.tests if u.speaker_id == s and u.utt_id in run.vectors] for s in speakers}
    poison = {
        s: [run.vectors[u.utt_id] for u in calls[speakers[a]][:POISON_CALLS]]
        for s, a in zip(speakers, attacker, strict=True)
    }
    attacker_cos = [cosine(v, anchors[t]) for t, s in enumerate(speakers) for v in poison[s]]
    # the naive rule: the calls added to the voiceprint as if they were enrolment audio (no floor, no cap)
    enrolled_vectors = run.claim_vectors if run.claim_vectors is not None else run.vectors

    def poisoned(floor: float) -> FloatArray:
        rule = replace(limits, min_cosine=floor)
        return np.stack([adapted_voiceprint(anchors[t], poison[s], rule) for t, s in enumerate(speakers)])

    naive = np.stack(
        [
            build_voiceprint(
                np.stack(
                    [enrolled_vectors[u.utt_id] for u in run.protocol.enrolment[s] if u.utt_id in enrolled_vectors]
                    + poison[s]
                )
            )
            for s in speakers
        ]
    )
    # decided: the attacker's next calls and the genuine speaker's calls, against each voiceprint
    tests = [u for u in run.protocol.tests if u.utt_id in run.vectors]
    index = {s: i for i, s in enumerate(speakers)}
    owner = np.array([index[u.speaker_id] for u in tests])
    position = np.array([calls[u.speaker_id].index(u) for u in tests])

    def outcome(claimed: FloatArray | None) -> dict[str, Any]:
        _, decisions, _, _ = _decide(run, regime, settings, tests, claimed)
        attack = [
            decisions[i, t]
            for t in range(len(speakers))
            for i in np.flatnonzero((owner == attacker[t]) & (position >= POISON_CALLS))
        ]
        genuine = [decisions[i, owner[i]] for i in range(len(tests))]
        a = sum(d == Decision.ACCEPT.value for d in attack)
        g = sum(d == Decision.ACCEPT.value for d in genuine)
        toward = [
            cosine((anchors if claimed is None else claimed)[t], voiceprints[attacker[t]]) for t in range(len(speakers))
        ]
        return {
            "attacker_accept": int(a),
            "attacker_n": len(attack),
            "attacker_accept_rate": _rate(int(a), len(attack)),
            "genuine_accept_rate": _rate(int(g), len(genuine)),
            "mean_cosine_to_attacker": round(float(np.mean(toward)), 4),
            "mean_cosine_to_enrolment": round(
                float(
                    np.mean(
                        [cosine((anchors if claimed is None else claimed)[t], anchors[t]) for t in range(len(speakers))]
                    )
                ),
                4,
            ),
        }

    report: dict[str, Any] = {
        "attacker_call_cosine_quantiles": {
            q: round(float(np.quantile(attacker_cos, q)), 4) for q in (0.5, 0.95, 0.99, 1.0)
        },
        "no_adaptation": outcome(None),
        "naive_unbounded": outcome(naive),
        "by_floor": {},
    }
    for floor in floors:
        admitted = float(np.mean(np.array(attacker_cos) >= floor))
        report["by_floor"][str(floor)] = {"attacker_calls_admitted": round(admitted, 4), **outcome(poisoned(floor))}
    # held to the full guard: the attacker's calls adapt only when they are themselves confident ACCEPTs
    llr, decisions, speech, _ = _decide(run, regime, settings, tests, None)
    adapted = 0
    for t in range(len(speakers)):
        for i in np.flatnonzero((owner == attacker[t]) & (position < POISON_CALLS)):
            call = facts(str(decisions[i, t]), llr[i, t], regime, speech[i])
            adapted += refusal_of(call, cosine(run.vectors[tests[i].utt_id], anchors[t]), limits) is None
    report["full_guard"] = {"attacker_calls": len(speakers) * POISON_CALLS, "adapted": int(adapted)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--rows", default="0,1,2,3", help="indices into ROWS")
    parser.add_argument("--floors", default="0.3,0.4,0.5,0.6", help="cosine floors of the adversarial sweep")
    parser.add_argument("--speakers", type=int, default=None, help="only the first N speakers (a subset)")
    parser.add_argument("--no-adversarial", action="store_true", help="skip the adversarial runs (a sweep)")
    parser.add_argument(
        "--no-cross-channel-guard",
        action="store_true",
        help="let calls adapt a voiceprint of another channel (the service refuses: CROSS_CHANNEL)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/out/adaptation.json"))
    # the rule's limits: the service's settings (VOICEID_ADAPTATION_*) unless given here
    for name in ("max_share", "call_share", "max_calls", "min_cosine", "llr_margin", "min_speech_s"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int if name == "max_calls" else float, default=None)
    args = parser.parse_args()

    settings = get_settings()
    limits = replace(
        limits_from(settings),
        **{k: v for k, v in vars(args).items() if k in vars(limits_from(settings)) and v is not None},
    )
    manifest = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    utterances = read_manifest(manifest)
    if args.speakers is not None:
        keep = sorted({u.speaker_id for u in utterances})[: args.speakers]
        utterances = [u for u in utterances if u.speaker_id in keep]
    base = build_protocol(utterances, 3)
    cohort = read_manifest(settings.dev_data_dir / "dev_cohort" / "manifest.csv")
    embed, speech = voiceid_embedder(settings)[0], speech_meter(settings)
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    version = backend_model_version(settings.model_dir, settings.inference_backend)
    calibrations = load_calibrations(settings.calibration_file or BUILTIN_CALIBRATION)
    floors = sorted({float(v) for v in args.floors.split(",")} | {limits.min_cosine})
    report: dict[str, Any] = {"manifest": str(manifest), "model_version": version, "limits": vars(limits), "rows": []}
    for k in (int(v) for v in args.rows.split(",")):
        label, enrol_channel, channel, view = ROWS[k]
        run = embed_run(
            base, channel, embed, cache, cohort, speech=speech, enrol_channel=enrol_channel, phone_view=view
        )
        regimes = channel_regimes(
            [c for c in calibrations if c.channel == run.service_channel and c.model_version == version],
            settings.score_norm,
        )
        regime = regime_for(regimes, settings, len(base.speakers))
        without = sequence(run, regime, settings, limits, adapt=False)
        # as the service: a call adapts only a voiceprint of its own channel (its phone view counts)
        same = run.claim_vectors is not None or enrol_channel == channel or args.no_cross_channel_guard
        with_ = sequence(run, regime, settings, limits, adapt=True, same_channel=same)
        attack = None if args.no_adversarial else adversarial(run, regime, settings, limits, floors)
        row = {
            "label": label,
            "calibration": regime.calibration.calibration_id,
            "accept_threshold": regime.thresholds.accept,
            "without": without,
            "with": with_,
            "adversarial": attack,
        }
        report["rows"].append(row)
        w, a = without["calls_2_to_7"], with_["calls_2_to_7"]
        print(
            f"{label}: genuine ACCEPT calls 2-7 {pct(w['genuine_accept_rate'])} -> {pct(a['genuine_accept_rate'])} %, "
            f"impostor {w['impostor_accept']} -> {a['impostor_accept']} of {a['impostor_n']}; "
            f"adapting calls {with_['adapting_calls']}",
            file=sys.stderr,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report, limits, with_adversarial=not args.no_adversarial)


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def print_tables(report: dict[str, Any], limits: AdaptationLimits, with_adversarial: bool = True) -> None:
    print(
        "| enrolment → calls | genuine ACCEPT, calls 2-7: without → with | calls 4-7: without → with "
        "| impostor ACCEPT, calls 2-7: without → with | calls that adapted |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in report["rows"]:
        w2, a2 = r["without"]["calls_2_to_7"], r["with"]["calls_2_to_7"]
        w4, a4 = r["without"]["calls_4_to_7"], r["with"]["calls_4_to_7"]
        calls = a2["genuine_n"] + r["with"]["rounds"][0]["genuine_n"]
        print(
            f"| {r['label']} | {pct(w2['genuine_accept_rate'])} → {pct(a2['genuine_accept_rate'])} % "
            f"| {pct(w4['genuine_accept_rate'])} → {pct(a4['genuine_accept_rate'])} % "
            f"| {w2['impostor_accept']} → {a2['impostor_accept']} of {a2['impostor_n']} "
            f"({pct(w2['impostor_accept_rate'], 3)} → {pct(a2['impostor_accept_rate'], 3)} %) "
            f"| {r['with']['adapting_calls']} of {calls} |"
        )
    if not with_adversarial:
        return
    print()
    print(
        f"| enrolment → calls | look-alike's next calls ACCEPT: none / naive / bounded (floor {limits.min_cosine}) "
        "| attacker calls past the floor | cos(voiceprint, attacker): none / naive / bounded "
        "| genuine ACCEPT: none / bounded | attacker calls adapting under the full guard |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in report["rows"]:
        adv = r["adversarial"]
        bounded = adv["by_floor"][str(limits.min_cosine)]
        none, naive = adv["no_adaptation"], adv["naive_unbounded"]
        accepts = f"{none['attacker_accept']} / {naive['attacker_accept']} / {bounded['attacker_accept']}"
        toward = " / ".join(str(x["mean_cosine_to_attacker"]) for x in (none, naive, bounded))
        print(
            f"| {r['label']} | {accepts} of {none['attacker_n']} | {pct(bounded['attacker_calls_admitted'])} % "
            f"| {toward} | {pct(none['genuine_accept_rate'])} / {pct(bounded['genuine_accept_rate'])} % "
            f"| {adv['full_guard']['adapted']} of {adv['full_guard']['attacker_calls']} |"
        )


if __name__ == "__main__":
    main()
