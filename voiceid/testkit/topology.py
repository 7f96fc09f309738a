"""The production topology on one machine: `voiceid db upgrade`, N `serve` replicas (the product app
with the hashing engine of fake_replica.py), one `voiceid worker`, one PostgreSQL database, and
HAProxy (Debian package) in front. Used by tests/replicas/test_topology.py and bench/replicas.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.servers import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "topology-admin-key-I9E68roS8GiipvYbk_2UY7H4Z2vOFkXV"
SESSION_SECRET = "topology-session-secret-0123456789abcdef"
WEBHOOK_SECRET = "topology-webhook-secret-0123456789abcdef"
CHANGE_POLL_S = 0.25  # the documented delay for a change to reach another replica's caches

# What HAProxy answers when a replica dies under a request it cannot retry elsewhere: 503 with
# Retry-After, like the service's own overload answer (a client retries either the same way).
UNAVAILABLE = (
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: application/json\r\n"
    "Retry-After: 1\r\n"
    "Cache-Control: no-cache\r\n"
    "Connection: close\r\n"
    "\r\n"
    '{"code": "REPLICA_UNAVAILABLE", "message": "the replica serving this request went away; retry"}\n'
)


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()), None
    )


def haproxy_config(port: int, replicas: dict[str, int], errorfile: Path) -> str:
    servers = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in replicas.items())
    return f"""global
    maxconn 1024
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # A replica that refuses the connection or dies before answering: the request goes to another.
    # Buffering the request first matters: a replica killed while a body was still being forwarded
    # otherwise ends the client's connection with no answer at all (HAProxy state SD).
    option http-buffer-request
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
    errorfile 502 {errorfile}
    errorfile 504 {errorfile}

frontend voiceid
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
"""


@dataclass
class Topology:
    workdir: Path
    env: dict[str, str]
    lb_url: str = ""
    replicas: dict[str, int] = field(default_factory=dict)  # name -> port
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def replica_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.replicas[name]}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(args, cwd=REPO, env=env or self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def kill(self, name: str) -> None:
        """SIGKILL: no graceful shutdown, in-flight requests die with the process."""
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in time")


def start(
    workdir: Path, database_url: str, replicas: int = 3, workers: int = 1, start_timeout_s: float = 300.0
) -> Topology:
    """Upgrade the database, start `replicas` serve processes, `workers` workers and HAProxy; wait until
    the load balancer answers /readyz. Call `stop()` in a finally block."""
    haproxy = haproxy_binary()
    if haproxy is None:
        raise FileNotFoundError("haproxy")
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "VOICEID_DATABASE_URL": database_url,
        "VOICEID_ENCRYPTION_KEY": generate_key_text(),
        "VOICEID_SESSION_SECRET": SESSION_SECRET,
        "VOICEID_ATTEMPT_RATE_LIMIT": "100000",  # the load drives many calls per speaker in seconds
        # One key store for every process (the data keys of crypto-shredding), as in production.
        "VOICEID_KEYSTORE_URL": f"sqlite:///{workdir / 'keystore.db'}",
        "VOICEID_ADMIN_KEY": ADMIN_KEY,
        "VOICEID_UPGRADE_ON_START": "false",
        # Scores normalised against the enrolled population: every replica's voiceprint cache
        # takes part in every decision, so "decide identically" tests the change feed.
        "VOICEID_SCORE_NORM": "s-norm",
        "VOICEID_COHORT_SOURCE": "population",
        "VOICEID_ACCEPT_THRESHOLD": "3.0",
        "VOICEID_REJECT_THRESHOLD": "1.0",
        "VOICEID_INFERENCE_WORKERS": "2",
        "VOICEID_INFERENCE_QUEUE": "64",
        "VOICEID_CHANGE_POLL_S": str(CHANGE_POLL_S),
        "VOICEID_TORCH_THREADS": "1",
        # Webhooks to receivers on 127.0.0.1 (the test's), which must be allowed explicitly.
        "VOICEID_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "VOICEID_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "VOICEID_WEBHOOK_ALLOW_HTTP": "true",
        "VOICEID_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VOICEID_WEBHOOK_POLL_S": "0.2",
        "OMP_NUM_THREADS": "1",
    }
    topology = Topology(workdir, env)
    try:
        upgrade = subprocess.run(
            [sys.executable, "-m", "voiceid.cli", "db", "upgrade"],
            cwd=REPO,
            env={**env, "VOICEID_DATA_DIR": str(workdir / "upgrade")},
            capture_output=True,
            timeout=start_timeout_s,
        )
        if upgrade.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {upgrade.stdout.decode()} {upgrade.stderr.decode()[-2000:]}")
        deadline = time.monotonic() + start_timeout_s
        for i in range(replicas):
            name, port = f"r{i}", free_port()
            topology.replicas[name] = port
            topology._spawn(
                name,
                [sys.executable, "-m", "voiceid.testkit.fake_replica", "--port", str(port)],
                {**env, "VOICEID_DATA_DIR": str(workdir / name)},
            )
        for i in range(workers):
            topology._spawn(
                f"worker{i}",
                [sys.executable, "-m", "voiceid.cli", "worker"],
                {**env, "VOICEID_DATA_DIR": str(workdir / f"worker{i}")},
            )
        for name in topology.replicas:
            _wait_ready(topology.replica_url(name), topology.processes[name], deadline)
        errorfile = workdir / "503.http"
        errorfile.write_text(UNAVAILABLE)
        lb_port = free_port()
        config = workdir / "haproxy.cfg"
        config.write_text(haproxy_config(lb_port, topology.replicas, errorfile))
        check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config: {check.stdout.decode()} {check.stderr.decode()}")
        topology._spawn("haproxy", [haproxy, "-db", "-f", str(config)])
        topology.lb_url = f"http://127.0.0.1:{lb_port}"
        _wait_ready(topology.lb_url, topology.processes["haproxy"], deadline)
    except BaseException:
        topology.stop()
        raise
    return topology
