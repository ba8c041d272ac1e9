"""P3 tunnel throughput and latency: our tunnel, a raw ``ssh -L``, and no tunnel at all.

One 200 MB HTTP download and N small requests, each three ways:
- ours: proxy_tunnel through condor_ssh_to_job into a job in its own network
  namespace on localpool (the notebook's path), or (``backend="htcondor"``) into a
  job of an ordinary account on a real HTCondor pool, through sudo as the hub runs it;
- raw ssh: plain OpenSSH ``ssh -N -L`` with the same options to ``sshd -i``
  (the starter's settings: ctr ciphers, hmac-sha2 MACs), no condor_ssh_to_job;
- direct: the same server, no tunnel.

No hub and no sudo here: this measures the tunnel alone, so it runs proxy_tunnel's
``Tunnel`` directly, as the account that runs it, on a localpool of its own (the
notebook's path through a sudo hub is in compare.py and spawner_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from localpool.clients.sshclient import keygen
from localpool.startd.sshd import SSHD, SSHD_CONFIG
from proxy_tunnel import Tunnel, answers_http, free_port
from tests.harness import Pool, UnixUsers
from tests.realpool import AccountPool, RealPool
from tests.waiting import wait_until

CHUNK = 1 << 20


def download(port: int, path: str) -> float:
    """MB/s of one GET through 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    size = 0
    while chunk := response.read(CHUNK):
        size += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return size / elapsed / 1e6


def latencies(port: int, count: int) -> list[float]:
    """Seconds of `count` small requests, each on a new connection."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/small")
        conn.getresponse().read()
        conn.close()
        out.append(time.perf_counter() - started)
    return out


def _wait_http(port: int, timeout: float = 30) -> None:
    what = f"an answer on 127.0.0.1:{port}"
    wait_until(lambda: asyncio.run(answers_http(port, 1.0)), timeout, what, 0.1)


def raw_ssh(root: Path, target_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """ssh -N -L to sshd -i (as ProxyCommand), the starter's sshd settings, no HTCondor."""
    keys = root / "raw-ssh"
    keys.mkdir()
    keygen(keys / "client")
    keygen(keys / "host")
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    (keys / "known_hosts").write_text("raw-ssh " + (keys / "host.pub").read_text())
    (keys / "sshd_config").write_text(
        SSHD_CONFIG.format(
            host_key=keys / "host",
            authorized_keys=keys / "authorized_keys",
            root_login="prohibit-password" if os.geteuid() == 0 else "no",
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    local = free_port()
    proxy = shlex.join([SSHD, "-i", "-e", "-f", str(keys / "sshd_config")])
    proc = subprocess.Popen(
        [
            "ssh",
            "-N",
            "-L",
            f"127.0.0.1:{local}:127.0.0.1:{target_port}",
            "-oExitOnForwardFailure=yes",
            "-oServerAliveInterval=15",
            "-oServerAliveCountMax=3",
            "-S",
            "none",
            f"-oUser={os.environ.get('USER', 'root')}",
            f"-oIdentityFile={keys / 'client'}",
            "-oIdentitiesOnly=yes",
            "-oStrictHostKeyChecking=yes",
            f"-oUserKnownHostsFile={keys / 'known_hosts'}",
            f"-oProxyCommand={proxy}",
            "raw-ssh",
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_http(local)
    return proc, local


@contextlib.contextmanager
def job_pool(root: Path, backend: str) -> Iterator[tuple[Pool | AccountPool, Path, list[str]]]:
    """(a pool whose jobs the tunnel reaches, a directory its jobs can read, how to run
    condor_ssh_to_job): localpool as root, or a real HTCondor pool as an ordinary account
    (real HTCondor runs no job as root)."""
    root.mkdir(parents=True, exist_ok=True)
    if backend == "localpool":
        pool = Pool(root / "pool", root / "submit")
        pool.submit_dir.mkdir()
        pool.localpool("start", "--cycle-seconds", "0.1")
        try:
            yield pool, root / "www", ["condor_ssh_to_job"]
        finally:
            pool.localpool("stop", "--remove-jobs")
        return
    base = Path(tempfile.mkdtemp(prefix="condorspawner-p3-"))
    base.chmod(0o755)
    (base / "homes").mkdir(mode=0o755)
    users = UnixUsers(base / "homes")
    real = RealPool.like_localpool(base)
    try:
        real.start()
        pool = AccountPool(real, users("p3"))
        yield pool, pool.scratch / "www", pool.command("condor_ssh_to_job")
    finally:
        real.stop()
        users.remove_all()
        shutil.rmtree(base, ignore_errors=True)


def run(
    root: Path, *, size_mb: int, requests: int, repeat: int, backend: str = "localpool"
) -> dict:
    """Ours (through condor_ssh_to_job of the ``backend``'s pool), raw ssh and direct."""
    with job_pool(root, backend) as (pool, data, program):
        data.mkdir(parents=True)
        with open(data / "big", "wb") as f:
            for _ in range(size_mb):
                f.write(os.urandom(CHUNK))
        (data / "small").write_text("ok")
        return _measure(root, pool, data, program, requests, repeat)


def _measure(root: Path, pool, data: Path, program: list[str], requests: int, repeat: int):
    # the server on the host (direct, raw ssh) and the same server in a job (ours)
    host_port = free_port()
    host_server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            str(host_port),
            "--directory",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict = {}
    try:
        job_port = free_port()
        job = pool.submit(f"""
            executable = {sys.executable}
            transfer_executable = false
            arguments = "-m http.server --bind 127.0.0.1 {job_port} --directory {data}"
            should_transfer_files = NO
            queue
        """)
        pool.wait_for(job, lambda a: a["JobStatus"] == 2)
        account = getattr(pool, "user", None)  # the real pool's ordinary account runs ssh
        uid = pwd.getpwnam(account).pw_uid if account else None
        tunnel = Tunnel(job, job_port, env=pool.env, program=program, ssh_uid=uid)
        # the tunnel's process and the relay of its held port run in this loop, in a
        # thread of its own: the measurements below block this one
        loop = asyncio.new_event_loop()
        running = threading.Thread(target=loop.run_forever, daemon=True)
        running.start()
        asyncio.run_coroutine_threadsafe(tunnel.start(), loop).result(timeout=180)
        raw, raw_port = raw_ssh(root, host_port)
        paths = {"ours": tunnel.local_port, "raw_ssh": raw_port, "direct": host_port}
        for name, port in paths.items():
            results[name] = {
                "MBps": [download(port, "/big") for _ in range(repeat)],
                "latency_s": latencies(port, requests),
            }
        os.killpg(raw.pid, signal.SIGTERM)
        raw.wait(timeout=10)
        asyncio.run_coroutine_threadsafe(tunnel.close(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        running.join(timeout=10)
        loop.close()
    finally:
        host_server.terminate()
    return results


if __name__ == "__main__":
    import json
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        out = run(Path(tmp), size_mb=50, requests=100, repeat=2)
    print(
        json.dumps(
            {k: {m: statistics.median(v) for m, v in d.items()} for k, d in out.items()}, indent=1
        )
    )
