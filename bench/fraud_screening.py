"""Fraud screening on the dev set, on the calibrated LLR scale the service uses (voiceid/fraud/scale.py).

    PYTHONPATH=. python bench/fraud_screening.py [--cached-only] [--json out.json]

Embeddings of the dev set (105 speakers x 10 utterances) through the phone channel (G.711 mu-law)
and clean (wideband), from the `voiceid eval` embedding cache (missing ones are computed unless
--cached-only). Each figure is the service's own code path: `fraud.scale` turns cosines into LLRs
on the pair's channel, `fraud.watchlist.pool_voice` pools flagged calls, `fraud.links.find_links` (what
`FraudChecks.links` runs) finds linked calls. Thresholds are the defaults in `voiceid/config.py` unless given.

1. Watchlist. Every dev speaker in turn is the fraudster: their first K calls are flagged (K = 1: one
   entry from one call; K = 3: three calls pooled into one voice) and their remaining calls are
   "later calls"; every utterance of every other speaker is a genuine call. Detection = share of
   later calls whose LLR against the entry reaches the threshold; false alarms = share of (genuine
   call, entry) pairs that do (the false-alarm rate *per genuine call per watchlist entry*).
   Channel pairs: entry phone / call phone, entry wideband / call wideband, entry wideband / call
   phone (a fraudster flagged on the app who then phones).
2. Duplicates. Voiceprints from disjoint halves of a speaker's utterances; same person = the two
   halves, different = halves of two speakers. Same channel, and across channels (one half
   wideband, the other through the phone: one person enrolled from the app and from the phone).
3. Linked calls. A fraudster calls as M in {3, 4, 5} enrolled customers (M of their utterances,
   drawn at random, one per identity); the pool of retained calls is every other speaker's 10
   calls, each on its own identity. A campaign is *linked* when the alert fires (>= N identities
   within the window, the call's own included) at its last call; the false-link rate is the share
   of genuine calls that link to at least one call of another identity, and the false-alert rate
   the share whose links reach the alert bar, both against the whole pool (1,040 calls of 104
   other speakers).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import ChainMap
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.config import get_settings
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.protocol import Utterance, read_manifest
from voiceid.evaluation.runner import EmbeddingCache, embed_utterances
from voiceid.fraud.index import VectorIndex
from voiceid.fraud.links import MAX_LINK_CANDIDATES, AttemptMeta, find_links
from voiceid.fraud.scale import CROSS_FILE, Channel, FraudScale, load_fraud_scale
from voiceid.fraud.watchlist import pool_voice
from voiceid.verify.vectors import l2_normalise

Matrix = npt.NDArray[np.float32]
EVAL_CHANNEL = {Channel.PHONE: "g711-ulaw", Channel.WIDEBAND: "clean"}


def load(utterances: list[Utterance], channel: str, cached_only: bool) -> dict[str, Matrix]:
    settings = get_settings()
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    if cached_only:
        found: dict[str, Matrix] = {}
        for u in utterances:
            data, content_type = through_channel(u.path, channel)
            vector = cache.get(data, content_type)
            if vector is not None:
                found[u.utt_id] = vector
        return found
    from voiceid.evaluation.embedders import voiceid_embedder

    vectors, _ = embed_utterances(utterances, channel, voiceid_embedder(settings)[0], cache)
    return vectors


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / max(total, 1):.2f} %"


def watchlist(
    speakers: Sequence[str],
    by_speaker: dict[Channel, dict[str, Matrix]],
    scale: FraudScale,
    entry_ch: Channel,
    call_ch: Channel,
    flagged: int,
    threshold: float,
) -> dict[str, Any]:
    detected = later = false_hits = pairs = 0
    for s in speakers:
        entry = pool_voice(by_speaker[entry_ch][s][:flagged])
        own_later = by_speaker[call_ch][s][flagged:]
        llr = scale.llr(own_later @ entry, entry_ch, call_ch)
        detected += int(np.sum(llr >= threshold))
        later += len(own_later)
        others = np.concatenate([by_speaker[call_ch][t] for t in speakers if t != s])
        llr = scale.llr(others @ entry, entry_ch, call_ch)
        false_hits += int(np.sum(llr >= threshold))
        pairs += len(others)
    return {
        "entry": entry_ch.value,
        "call": call_ch.value,
        "flagged_calls_pooled": flagged,
        "threshold_llr": threshold,
        "detected": detected,
        "later_calls": later,
        "detection_rate": detected / max(later, 1),
        "false_alarms": false_hits,
        "genuine_call_entry_pairs": pairs,
        "false_alarm_rate_per_call_per_entry": false_hits / max(pairs, 1),
    }


def duplicates(
    speakers: Sequence[str],
    by_speaker: dict[Channel, dict[str, Matrix]],
    scale: FraudScale,
    a_ch: Channel,
    b_ch: Channel,
    threshold: float,
) -> dict[str, Any]:
    a = np.stack([pool_voice(by_speaker[a_ch][s][: len(by_speaker[a_ch][s]) // 2]) for s in speakers])
    b = np.stack([pool_voice(by_speaker[b_ch][s][len(by_speaker[b_ch][s]) // 2 :]) for s in speakers])
    llr = scale.llr(a @ b.T, a_ch, b_ch)
    same = np.diag(llr)
    diff = llr[~np.eye(len(speakers), dtype=bool)]
    return {
        "voiceprint_a": a_ch.value,
        "voiceprint_b": b_ch.value,
        "threshold_llr": threshold,
        "detected": int(np.sum(same >= threshold)),
        "same_person_pairs": len(same),
        "detection_rate": float(np.mean(same >= threshold)),
        "false_matches": int(np.sum(diff >= threshold)),
        "different_person_pairs": len(diff),
        "false_match_rate": float(np.mean(diff >= threshold)),
    }


def linking(
    speakers: Sequence[str],
    calls: dict[str, Matrix],
    scale: FraudScale,
    channel: Channel,
    threshold: float,
    pooled_threshold: float | None,
    min_identities: int,
    draws: int,
    seed: int,
) -> dict[str, Any]:
    """Links found as the service finds them (`fraud.links.find_links`, what `FraudChecks.links`
    runs): the pool is an attempt index of every call, each call's attempt labelled with the
    identity it claimed."""
    rng = np.random.default_rng(seed)
    owner = np.concatenate([[s] * len(calls[s]) for s in speakers])
    pool = np.concatenate([calls[s] for s in speakers])
    keys = [str(j) for j in range(len(owner))]
    index = VectorIndex(pool.shape[1], exact_max=len(owner))  # exact search: the bench's pool is small
    index.add(keys, pool)
    when = datetime(2026, 1, 1, tzinfo=UTC)  # one time for all: every call falls in the alert window
    metas = {keys[j]: AttemptMeta(keys[j], str(owner[j]), channel.value, "ACCEPT", when) for j in range(len(owner))}
    candidates = min(len(index), MAX_LINK_CANDIDATES)

    def linked(i: int, claimed: str, labels: Mapping[str, AttemptMeta]) -> npt.NDArray[np.int64]:
        found = find_links(
            pool[i], claimed, channel.value, index, labels, scale, threshold, pooled_threshold, candidates, keys[i]
        )
        return np.array(sorted(int(link.verification_id) for link in found), dtype=np.int64)

    llr = scale.llr(pool @ pool.T, channel, channel)
    other_identity = owner[:, None] != owner[None, :]
    # Genuine calls: each pool call on its own identity against every other speaker's calls.
    found = [linked(i, str(owner[i]), metas) for i in range(len(owner))]
    linked_identities = np.array([len(set(owner[f])) for f in found])
    n_links = sum(len(f) for f in found)
    same = (owner[:, None] == owner[None, :]) & ~np.eye(len(owner), dtype=bool)
    pair_detection = float(np.mean(llr[same] >= threshold))
    genuine = {
        "genuine_calls": len(owner),
        "pool_calls_per_genuine_call": int(other_identity[0].sum()),
        "calls_with_a_false_link": int(np.sum(linked_identities >= 1)),
        "false_link_rate_per_genuine_call": float(np.mean(linked_identities >= 1)),
        "false_links_per_genuine_call": float(n_links / len(owner)),
        "false_link_rate_per_call_pair": float(n_links / other_identity.sum()),
        "false_alerts": int(np.sum(linked_identities + 1 >= min_identities)),
        "false_alert_rate_per_genuine_call": float(np.mean(linked_identities + 1 >= min_identities)),
    }
    campaigns = []
    for m in (3, 4, 5):
        alerted = all_linked = total = 0
        for s in speakers:
            own = np.flatnonzero(owner == s)
            for _ in range(draws):
                chosen = rng.choice(own, size=m, replace=False)
                # The last call of the campaign against the earlier ones (each on its own identity)
                # and against the genuine pool (other speakers' calls, their own identities); the
                # speaker's other calls stay on the last call's identity (its own history, no link).
                last, earlier = chosen[-1], chosen[:-1]
                labels = ChainMap(
                    {keys[e]: replace(metas[keys[e]], speaker_ref=f"{s}#campaign-{k}") for k, e in enumerate(earlier)},
                    metas,
                )
                hits = linked(int(last), str(s), labels)
                fraud_links = np.isin(earlier, hits)
                pool_links = {owner[j] for j in hits if owner[j] != s}
                identities = 1 + int(fraud_links.sum()) + len(pool_links)
                alerted += int(identities >= min_identities)
                all_linked += int(fraud_links.all())
                total += 1
        campaigns.append(
            {
                "identities": m,
                "campaigns": total,
                "alerted_at_last_call": alerted,
                "alert_rate": alerted / total,
                "all_earlier_calls_linked": all_linked,
                "all_linked_rate": all_linked / total,
            }
        )
    return {
        "channel": channel.value,
        "threshold_llr": threshold,
        "pooled_threshold_llr": pooled_threshold,
        "min_identities": min_identities,
        "fraud_call_pairs_linked": pair_detection,
        **genuine,
        "campaigns": campaigns,
    }


def fit_cross(speakers: Sequence[str], by_speaker: dict[Channel, dict[str, Matrix]], enrol: int = 3) -> dict[str, Any]:
    """The cross-channel calibration, fitted like `voiceid calibrate` fits a channel's: a voiceprint
    from `enrol` utterances on one channel against single utterances on the other (both ways),
    same speaker vs different speakers, by prior-weighted logistic regression."""
    from voiceid.verify.calibration import fit_logistic

    target: list[npt.NDArray[np.float32]] = []
    nontarget: list[npt.NDArray[np.float32]] = []
    for enrol_ch, probe_ch in ((Channel.WIDEBAND, Channel.PHONE), (Channel.PHONE, Channel.WIDEBAND)):
        prints = np.stack([pool_voice(by_speaker[enrol_ch][s][:enrol]) for s in speakers])
        for i, s in enumerate(speakers):
            scores = by_speaker[probe_ch][s][enrol:] @ prints.T
            target.append(scores[:, i])
            nontarget.append(np.delete(scores, i, axis=1).ravel())
    tar, non = np.concatenate(target), np.concatenate(nontarget)
    slope, offset = fit_logistic(tar, non)
    return {
        "cross": {
            "slope": float(slope),
            "offset": float(offset),
            "n_target": len(tar),
            "n_nontarget": len(non),
            "fitted_on": f"dev:clean x g711-ulaw, {len(speakers)} speakers, voiceprint of {enrol} vs one utterance",
        }
    }


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cached-only", action="store_true", help="use only embeddings already in the cache")
    parser.add_argument("--watchlist-llr", type=float, default=settings.watchlist_llr_threshold)
    parser.add_argument("--duplicate-llr", type=float, default=settings.duplicate_llr_threshold)
    parser.add_argument("--link-llr", type=float, default=settings.link_llr_threshold)
    parser.add_argument(
        "--link-pooled-llr",
        type=float,
        default=settings.link_pooled_llr_threshold,
        help="second-pass bar (negative: no second pass)",
    )
    parser.add_argument("--alert-identities", type=int, default=settings.link_alert_identities)
    parser.add_argument("--sweep", action="store_true", help="also print each figure at a range of thresholds")
    parser.add_argument("--draws", type=int, default=20, help="random campaigns per speaker and size")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--fit-cross", action="store_true", help=f"refit the cross-channel scale into {CROSS_FILE}")
    args = parser.parse_args()

    utterances = read_manifest(settings.dev_data_dir / "dev" / "manifest.csv")
    vectors = {ch: load(utterances, EVAL_CHANNEL[ch], args.cached_only) for ch in Channel}
    both = [u for u in utterances if all(u.utt_id in vectors[ch] for ch in Channel)]
    counts: dict[str, int] = {}
    for u in both:
        counts[u.speaker_id] = counts.get(u.speaker_id, 0) + 1
    speakers = sorted(s for s, n in counts.items() if n >= 6)  # enough for 3 flagged + later calls
    by_speaker = {
        ch: {s: l2_normalise(np.stack([vectors[ch][u.utt_id] for u in both if u.speaker_id == s])) for s in speakers}
        for ch in Channel
    }
    n_calls = sum(len(v) for v in by_speaker[Channel.PHONE].values())
    print(f"dev: {len(speakers)} speakers, {n_calls} utterances on both channels", file=sys.stderr)
    if args.fit_cross:
        fitted = fit_cross(speakers, by_speaker)
        CROSS_FILE.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(CROSS_FILE.read_text()) if CROSS_FILE.is_file() else {}
        CROSS_FILE.write_text(json.dumps({**existing, **fitted}, indent=2) + "\n")  # keeps the per-channel fits
        print(f"wrote {CROSS_FILE}: {fitted['cross']}", file=sys.stderr)
    scale = load_fraud_scale()
    out: dict[str, Any] = {"speakers": len(speakers), "utterances": n_calls, "scale": scale.to_dict()}

    P, W = Channel.PHONE, Channel.WIDEBAND
    print(f"\n## Watchlist at LLR >= {args.watchlist_llr:g}")
    print("| entry | call | flagged calls pooled | detection of later calls | false alarms per call per entry |")
    print("|---|---|---:|---:|---:|")
    out["watchlist"] = []
    for entry_ch, call_ch in ((P, P), (W, W), (W, P)):
        for k in (1, 3):
            r = watchlist(speakers, by_speaker, scale, entry_ch, call_ch, k, args.watchlist_llr)
            out["watchlist"].append(r)
            print(
                f"| {entry_ch} | {call_ch} | {k} | {rate(r['detected'], r['later_calls'])} | "
                f"{r['false_alarms']}/{r['genuine_call_entry_pairs']} = "
                f"{r['false_alarm_rate_per_call_per_entry']:.2e} |"
            )
    # The rule before calibrated screening: one flagged call, raw cosine >= 0.65, any channel pair.
    print("\nbefore (one call, raw cosine >= 0.65): ", end="")
    old = []
    for entry_ch, call_ch in ((P, P), (W, W), (W, P)):
        hit = miss = fa = n = 0
        for sp in speakers:
            entry = by_speaker[entry_ch][sp][0]
            later = by_speaker[call_ch][sp][1:] @ entry
            hit += int(np.sum(later >= 0.65))
            miss += len(later)
            others = np.concatenate([by_speaker[call_ch][t] for t in speakers if t != sp]) @ entry
            fa += int(np.sum(others >= 0.65))
            n += len(others)
        old.append(
            {
                "entry": entry_ch.value,
                "call": call_ch.value,
                "detection_rate": hit / miss,
                "false_alarm_rate_per_call_per_entry": fa / n,
            }
        )
        print(f"{entry_ch}/{call_ch} detection {100 * hit / miss:.1f} %, false alarms {fa / n:.2e}; ", end="")
    print()
    out["watchlist_before"] = old
    if args.sweep:
        print("\nsweep (entry/call phone, 3 pooled | 1 call): threshold, detection, false alarms per call per entry")
        for t in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
            r3 = watchlist(speakers, by_speaker, scale, P, P, 3, t)
            r1 = watchlist(speakers, by_speaker, scale, P, P, 1, t)
            print(
                f"  {t:4.1f}  {r3['detection_rate']:.3f} {r3['false_alarm_rate_per_call_per_entry']:.2e}"
                f"  |  {r1['detection_rate']:.3f} {r1['false_alarm_rate_per_call_per_entry']:.2e}"
            )

    print(f"\n## Duplicates at LLR >= {args.duplicate_llr:g} (voiceprints from 5 + 5 utterances)")
    print("| voiceprint A | voiceprint B | same person held | false matches |")
    print("|---|---|---:|---:|")
    out["duplicates"] = []
    for a_ch, b_ch in ((P, P), (W, W), (W, P)):
        r = duplicates(speakers, by_speaker, scale, a_ch, b_ch, args.duplicate_llr)
        out["duplicates"].append(r)
        print(
            f"| {a_ch} | {b_ch} | {rate(r['detected'], r['same_person_pairs'])} | "
            f"{r['false_matches']}/{r['different_person_pairs']} = {r['false_match_rate']:.2e} |"
        )
    a = np.stack([pool_voice(by_speaker[W][sp][:5]) for sp in speakers])
    b = np.stack([pool_voice(by_speaker[P][sp][5:]) for sp in speakers])
    raw = a @ b.T
    out["duplicates_before_cross"] = {
        "detection_rate": float(np.mean(np.diag(raw) >= 0.80)),
        "false_match_rate": float(np.mean(raw[~np.eye(len(speakers), dtype=bool)] >= 0.80)),
    }
    print(
        "before (raw cosine >= 0.80), wideband vs phone: held "
        f"{100 * out['duplicates_before_cross']['detection_rate']:.1f} %, "
        f"false matches {out['duplicates_before_cross']['false_match_rate']:.2e}"
    )
    if args.sweep:
        print("\nsweep (wideband vs phone voiceprints): threshold, held, false-match rate")
        for t in (4.0, 6.0, 8.0, 10.0, 12.0):
            r = duplicates(speakers, by_speaker, scale, W, P, t)
            print(f"  {t:4.1f}  {r['detection_rate']:.3f}  {r['false_match_rate']:.2e}")

    pooled_bar = None if args.link_pooled_llr is None or args.link_pooled_llr < 0 else args.link_pooled_llr
    print(
        f"\n## Linked calls at LLR >= {args.link_llr:g} (second pass on the pooled voice: {pooled_bar}), "
        f"alert at {args.alert_identities} identities"
    )
    out["linking"] = []
    for ch in (P, W):
        r = linking(
            speakers, by_speaker[ch], scale, ch, args.link_llr, pooled_bar, args.alert_identities, args.draws, seed=14
        )
        out["linking"].append(r)
        print(
            f"{ch}: genuine calls {r['genuine_calls']} (pool of {r['pool_calls_per_genuine_call']} "
            f"other-identity calls each): with a false link {rate(r['calls_with_a_false_link'], r['genuine_calls'])}, "
            f"false links per call {r['false_links_per_genuine_call']:.3f} "
            f"(per call pair {r['false_link_rate_per_call_pair']:.2e}), "
            f"false alerts {rate(r['false_alerts'], r['genuine_calls'])}; "
            f"two calls of one fraudster linked {100 * r['fraud_call_pairs_linked']:.1f} %"
        )
        for c in r["campaigns"]:
            print(
                f"  fraudster as {c['identities']} customers: alert at last call "
                f"{rate(c['alerted_at_last_call'], c['campaigns'])}; every earlier call linked "
                f"{rate(c['all_earlier_calls_linked'], c['campaigns'])}"
            )
    if args.sweep:
        print("\nsweep (phone): threshold, false-link rate per genuine call, false alerts, alert rate at 3 / 5")
        for t in (3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
            r = linking(speakers, by_speaker[P], scale, P, t, None, args.alert_identities, 5, seed=14)
            c3, c5 = r["campaigns"][0], r["campaigns"][2]
            print(
                f"  {t:4.1f}  {r['false_link_rate_per_genuine_call']:.3f}  {r['false_alert_rate_per_genuine_call']:.4f}"
                f"  {c3['alert_rate']:.3f}  {c5['alert_rate']:.3f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
