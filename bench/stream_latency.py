"""Time from the first audio frame to the decision, per protocol, for one dev-set speaker.

Starts the real service in this process (HTTP API + WebSocket under uvicorn on 127.0.0.1, the
AudioSocket and SIP servers on the same service, SQLite in a temporary directory, default settings),
enrols the speaker over HTTP with two utterances as 8 kHz μ-law, then plays one probe utterance
with the IVR simulator at real time (speed 1) over each protocol, `--repeats` times:
- twilio / audiosocket / sip (INVITE + PCMU RTP over UDP): streaming; the decision comes as soon
  as there is enough speech and the score is outside the INCONCLUSIVE band (early), while the
  caller is still talking;
- http: the whole utterance is spoken first, then uploaded (the baseline an IVR has without streams).

Usage: python bench/stream_latency.py [--speaker ls_1688] [--enrol 0,1] [--probe 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr

from voiceid.api.app import create_app
from voiceid.config import get_settings
from voiceid.evaluation.protocol import read_manifest
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.storage.crypto import generate_key_text
from voiceid.telephony_adapter import simulator
from voiceid.telephony_adapter.audiosocket import AudioSocketServer
from voiceid.telephony_adapter.sip import SipServer


def start_http(app: Any) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    utterances = [
        u for u in read_manifest(settings.dev_data_dir / "dev" / "manifest.csv") if u.speaker_id == args.speaker
    ]
    enrol_files = [utterances[int(i)].path for i in args.enrol.split(",")]
    probe_file = utterances[args.probe].path
    with tempfile.TemporaryDirectory() as tmp:
        app_settings = settings.model_copy(
            update={
                "data_dir": Path(tmp),
                "database_url": None,
                "admin_key": SecretStr(secrets.token_urlsafe(32)),  # VOICEID_ADMIN_KEY needs >= 128 bits
                # The same probe is played on every protocol and repeat: by design that is a replay
                # (REPLAY_SUSPECTED) and, past 10 attempts, a rate-limited speaker; this bench times
                # the protocols, so both guards are off here (their own tests cover them).
                "replay_enabled": False,
                "attempt_rate_limit": 1000,
                "encryption_key": SecretStr(generate_key_text()),
            }
        )
        app = create_app(app_settings)
        server, url = start_http(app)
        service: VoiceIdService = app.state.service
        ivr_key = service.keys.create(Role.IVR)[1]
        enrol_key = service.keys.create(Role.ENROLMENT)[1]
        audiosocket = AudioSocketServer(service)
        port = await audiosocket.start("127.0.0.1", 0)
        sip = SipServer(service)
        sip_port = await sip.start("127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {enrol_key}"}, timeout=120
            ) as http:
                consent = {"consent": {"granted": True, "text_version": "bench"}}
                (await http.put(f"/v1/speakers/{args.speaker}", json=consent)).raise_for_status()
                for path in enrol_files:
                    r = await http.post(
                        f"/v1/speakers/{args.speaker}/enrolment-audio",
                        content=simulator.phone_line([path]),
                        headers={"Content-Type": "audio/basic"},
                    )
                    r.raise_for_status()
                if r.json()["status"] != "ENROLLED":
                    raise SystemExit(f"not enrolled after {args.enrol}: {r.json()}")
            probe = simulator.phone_line([probe_file])
            ws_url = url.replace("http://", "ws://") + "/v1/streams/twilio"
            rows: dict[str, list[dict[str, Any]]] = {p: [] for p in simulator.PROTOCOLS}
            for _ in range(args.repeats):
                for protocol in simulator.PROTOCOLS:
                    if protocol == "twilio":
                        result = await simulator.simulate_twilio(ws_url, args.speaker, "verify", probe, ivr_key, 1.0)
                    elif protocol == "audiosocket":
                        result = await simulator.simulate_audiosocket(
                            url, "127.0.0.1", port, args.speaker, "verify", probe, ivr_key, 1.0
                        )
                    elif protocol == "sip":
                        result = await simulator.simulate_sip(
                            url, "127.0.0.1", sip_port, args.speaker, "verify", probe, ivr_key, 1.0
                        )
                    else:
                        result = await simulator.simulate_http(url, args.speaker, "verify", probe, ivr_key, 1.0)
                    decision = result.decision or {}
                    rows[protocol].append(
                        {
                            "first_frame_to_decision_s": round(result.first_frame_to_outcome_s or float("nan"), 3),
                            "decision": decision.get("decision"),
                            "score": decision.get("score"),
                            "net_speech_s": decision.get("net_speech_s"),
                            "decided_on_audio_s": (result.outcome or {}).get("audio_s"),
                            "early": (result.outcome or {}).get("early"),
                        }
                    )
        finally:
            await audiosocket.close()
            await sip.close()
            server.should_exit = True
    return {
        "speaker": args.speaker,
        "enrol_files": [str(p.name) for p in enrol_files],
        "probe_file": probe_file.name,
        "probe_s": round(len(probe) / simulator.RATE, 3),
        "verify_min_speech_s": settings.verify_min_speech_s,
        "stream_interim_s": settings.stream_interim_s,
        "phone_thresholds": [
            service.policy.thresholds("phone").thresholds.reject,
            service.policy.thresholds("phone").thresholds.accept,
        ],
        "cpu": f"{platform.processor() or platform.machine()} x{os.cpu_count()}",
        "median_first_frame_to_decision_s": {
            p: round(statistics.median(r["first_frame_to_decision_s"] for r in rows[p]), 3) for p in rows
        },
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker", default="ls_1688")
    parser.add_argument("--enrol", default="0,1", help="indices of the speaker's utterances used to enrol")
    parser.add_argument("--probe", type=int, default=6, help="index of the utterance played as the call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
