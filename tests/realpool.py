"""A real HTCondor pool on this machine, for the ``htcondor`` test tier and the benchmarks.

Given an HTCondor install (``CONDORSPAWNER_HTCONDOR``: a directory with ``sbin/condor_master``
such as the unpacked ``../shared/htcondor`` tarball or ``/usr``, or that tarball itself),
:class:`RealPool` writes a configuration into a private directory and starts a
single-machine pool as root: collector, negotiator, one or two schedds, a startd with one
partitionable slot, shared port, FS and IDTOKENS authentication with a pool signing key,
``condor_ssh_to_job``, short cycles. Its tools are wrappers in ``<dir>/bin`` that name
the configuration, so every account and ``sudo`` find this pool and no other (nothing
is read from ``/etc/condor``). :meth:`RealPool.stop` removes the jobs, ends the daemons
and removes the directory. Two pools on one machine share nothing but the ``condor``
daemon account.

This is test code: the product only ever runs ``condor_*`` tools (``pool.bin_dir``).

    python -m tests.realpool start DIR   # a pool in DIR/pool, its tools in DIR/install/bin
    python -m tests.realpool stop DIR    # its jobs removed, its daemons ended, both removed
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from containers.catalogue import Catalogue
from containers.epconfig import execute_point_config
from tests import terminals
from tests.harness import REPO, MultiUserPool, QueueLooks
from tests.waiting import wait_until

ENV = "CONDORSPAWNER_HTCONDOR"
HOW_TO_RUN = (
    f"the real HTCondor tier needs {ENV}=DIR (an HTCondor install, e.g. the unpacked "
    "../shared/htcondor tarball, or the tarball itself): "
    f"{ENV}=../shared/htcondor/htcondor-25.0.13-debian12-x86_64.tar.gz ./scripts/test -m htcondor"
)
DAEMON_ACCOUNT = "condor"
# what the tests' site offers (hub_config.demo's catalogue): advertised, run without a
# container runtime (this machine has no apptainer)
OFFERED_OS = ("Rocky9", "Debian12")
TOOLS = (
    "condor_submit",
    "condor_q",
    "condor_rm",
    "condor_hold",
    "condor_release",
    "condor_history",
    "condor_status",
    "condor_qedit",
    "condor_vacate_job",
    "condor_ssh_to_job",
    "condor_submit_dag",
    "condor_dagman",  # condor_submit_dag finds it on PATH
    "condor_token_fetch",
    "condor_token_list",
    "condor_token_create",
    "condor_config_val",
    "condor_version",
    "condor_ping",
    "condor_off",
    "condor_on",
    "condor_reschedule",
    "condor_wait",
)


CONFIG = """\
# Written by tests/realpool.py: a real single-machine pool for tests.
RELEASE_DIR = {release}
{libexec}LOCAL_DIR = {local}
LOCAL_CONFIG_FILE =
LOCAL_CONFIG_DIR =
REQUIRE_LOCAL_CONFIG_FILE = False
CONDOR_IDS = {ids}
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1:{port}
SHARED_PORT_PORT = {port}
NETWORK_INTERFACE = 127.0.0.1
ENABLE_IPV6 = False
DAEMON_SOCKET_DIR = $(LOCAL_DIR)/sock
use ROLE : CentralManager
use ROLE : Submit
use ROLE : Execute
use SECURITY : recommended
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS
SEC_CLIENT_AUTHENTICATION_METHODS = FS, IDTOKENS
SEC_PASSWORD_DIRECTORY = $(LOCAL_DIR)/passwords.d
SEC_TOKEN_SYSTEM_DIRECTORY = $(LOCAL_DIR)/tokens.d
SEC_TOKEN_POOL_SIGNING_KEY_FILE = $(SEC_PASSWORD_DIRECTORY)/POOL
QUEUE_SUPER_USERS = root, condor
use FEATURE : PartitionableSlot
use POLICY : ALWAYS_RUN_JOBS
NUM_CPUS = {cpus}
MEMORY = {memory_mb}
RUNBENCHMARKS = 0
ENABLE_SSH_TO_JOB = True
SSH_TO_JOB_SSHD = /usr/sbin/sshd
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 5
SCHEDD_MIN_INTERVAL = 1
STARTER_UPDATE_INTERVAL = 5
# as docs/admin.md recommends: condor_ssh_to_job works about 1 s after a job starts
STARTER_INITIAL_UPDATE_INTERVAL = 0
SHADOW_QUEUE_UPDATE_INTERVAL = 5
UPDATE_INTERVAL = 5
PERIODIC_EXPR_INTERVAL = 5
MAIL = /bin/true
# an execute point finds its configuration in /etc/condor; this pool's jobs
# find it here, so the tools in $_CONDOR_BIN reach this pool from a job
STARTER_JOB_ENVIRONMENT = "CONDOR_CONFIG={config}"
# the tests' accounts live under /tmp, where DAGMan refuses its node log unless told
# (the knob HTCondor's own test suite sets: dagman_main.cpp)
DAGMAN_AVOID_SLASH_TMP = False
{second}"""

# The schedd refuses condor_ssh_to_job until the starter's first update has told the
# startd where the starter is (docs/admin.md, "Spawn time"): HTCondor's own timing, and
# the one the admin guide recommends (added after the pool's configuration).
HTCONDOR_DEFAULTS = "STARTER_UPDATE_INTERVAL = 300\nSTARTER_INITIAL_UPDATE_INTERVAL = 8\n"


def starter_first_update(seconds: int) -> str:
    """HTCondor's defaults but the starter's first update ``seconds`` after the job starts."""
    return f"STARTER_UPDATE_INTERVAL = 300\nSTARTER_INITIAL_UPDATE_INTERVAL = {seconds}\n"


RECOMMENDED = starter_first_update(0)  # docs/admin.md: 0.94 s refused instead of 9.73 s


SECOND_SCHEDD = """\
# a second schedd, schedd2, as a site with several access points has;
# both named as localpool names them (schedd1@host, schedd2@host)
SCHEDD_NAME = schedd1
SCHEDD2 = $(SCHEDD)
SCHEDD2_ARGS = -local-name schedd2
SCHEDD2.SCHEDD_NAME = schedd2
SCHEDD2.SCHEDD_LOG = $(LOG)/Schedd2Log
SCHEDD2.SPOOL = $(LOCAL_DIR)/spool2
SCHEDD2.SCHEDD_ADDRESS_FILE = $(LOCAL_DIR)/spool2/.schedd_address
SCHEDD2.SCHEDD_DAEMON_AD_FILE = $(LOCAL_DIR)/spool2/.schedd_classad
SCHEDD2.SHARED_PORT_DEFAULT_ID = schedd2
DAEMON_LIST = $(DAEMON_LIST) SCHEDD2
"""


def release_dir() -> Path | None:
    """The HTCondor install named by ``CONDORSPAWNER_HTCONDOR`` (a tarball is unpacked once
    into /tmp), or None when the variable is not set."""
    named = os.environ.get(ENV)
    if not named:
        return None
    path = Path(named).resolve()
    if path.is_file():
        path = _unpacked(path)
    if not (path / "sbin" / "condor_master").exists():
        raise RuntimeError(f"{ENV}={named}: no sbin/condor_master there")
    return path


def _unpacked(tarball: Path) -> Path:
    """The tarball's one top directory, unpacked under /tmp (kept for the next run)."""
    stamp = f"{tarball.stat().st_size}-{int(tarball.stat().st_mtime)}"
    target = Path(tempfile.gettempdir()) / f"condorspawner-htcondor-{stamp}"
    if not target.is_dir():
        scratch = Path(tempfile.mkdtemp(prefix="condorspawner-htcondor-unpack-"))
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(scratch)], check=True, timeout=300)
        (top,) = scratch.iterdir()
        try:
            top.rename(target)
        except OSError:  # another run unpacked it at the same time
            if not target.is_dir():
                raise
        shutil.rmtree(scratch, ignore_errors=True)
        target.chmod(0o755)
    return target


def daemon_ids() -> tuple[int, int]:
    """uid and gid of the ``condor`` system account (made once; never removed: another
    run's pool may be using it)."""
    try:
        entry = pwd.getpwnam(DAEMON_ACCOUNT)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                DAEMON_ACCOUNT,
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )
        entry = pwd.getpwnam(DAEMON_ACCOUNT)
    return entry.pw_uid, entry.pw_gid


class RealPool(MultiUserPool):
    """A running real HTCondor pool; the same interface as the localpool drivers
    (``run(..., user=NAME)``, ``submit``, ``ad``, ``wait_for``, ``schedd_off``)."""

    backend = "htcondor"
    network = "shared"  # jobs share the machine's loopback, as on most real pools

    def __init__(
        self,
        base: Path,
        release: Path,
        schedds: int = 1,
        cpus: int = 4,
        memory_mb: int = 8192,
        extra_config: str = "",
    ) -> None:
        self.base = base
        self.extra_config = extra_config  # after all of the pool's own (a benchmark's setting)
        self.release = release
        self.schedds = schedds
        self.cpus = cpus  # advertised, as localpool's --cpus: more than the machine has
        self.memory_mb = memory_mb
        self.root = base / "pool"
        self.local = self.root / "local"
        self.config = self.root / "condor_config"
        self.bin = base / "install" / "bin"
        self.prefix = self.bin.parent
        self.port = 0
        self.master: subprocess.Popen | None = None

    @classmethod
    def like_localpool(
        cls, base: Path, schedds: int = 1, start_options: tuple[str, ...] | None = None
    ) -> RealPool:
        """The pool a test asked of localpool: its ``--cpus`` and ``--memory`` (others are
        localpool's own); on the install ``CONDORSPAWNER_HTCONDOR`` names."""
        from condorspawner.units import parse_size_mb

        words = list(start_options or ())
        given = dict(zip(words[::2], words[1::2], strict=False))
        return cls(
            base,
            release_dir(),
            schedds=schedds,
            cpus=int(given.get("--cpus", 4)),
            memory_mb=parse_size_mb(given.get("--memory", "8GB")),
        )

    # --- start and stop ------------------------------------------------------------

    def configuration(self) -> str:
        uid, gid = daemon_ids()
        catalogue = Catalogue.from_config(
            {
                "os": [
                    {
                        "name": n,
                        "image": f"/containers/{n.lower()}.sif",
                        "default": n == OFFERED_OS[0],
                    }
                    for n in OFFERED_OS
                ]
            }
        )
        # a package's layout (/usr: libexec/condor) or a tarball's (libexec)
        packaged = self.release / "libexec" / "condor"
        return (
            CONFIG.format(
                release=self.release,
                libexec=f"LIBEXEC = {packaged}\n" if packaged.is_dir() else "",
                local=self.local,
                ids=f"{uid}.{gid}",
                port=self.port,
                cpus=self.cpus,
                memory_mb=self.memory_mb,
                config=self.config,
                second=SECOND_SCHEDD if self.schedds > 1 else "",
            )
            + execute_point_config(catalogue)
            + (
                "# no container runtime on this machine: the OS is advertised, the job runs bare\n"
                "SINGULARITY_JOB = False\n"
            )
            + self.extra_config
        )

    def start(self, timeout: float = 60) -> None:
        uid, gid = daemon_ids()
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        if self.root.exists() or self.prefix.exists():
            raise RuntimeError(
                f"{self.root} or {self.prefix} exists (an earlier pool?): remove it first "
                f"(python -m tests.realpool stop {self.base})"
            )
        self.root.mkdir(mode=0o755)
        from proxy_tunnel import free_port

        self.port = free_port()
        self.config.write_text(self.configuration())
        self.config.chmod(0o644)
        self.local.mkdir(mode=0o755)
        for name in ("log", "spool", "spool2", "execute", "lock", "sock"):
            (self.local / name).mkdir(mode=0o755)
            os.chown(self.local / name, uid, gid)
        for name in ("passwords.d", "tokens.d"):
            (self.local / name).mkdir(mode=0o700)
        self._write_tools()
        key, seed = self.local / "passwords.d" / "POOL", self.local / "passwords.d" / "seed"
        seed.write_bytes(os.urandom(32).hex().encode())  # never on a command line
        made = self.run(
            str(self.release / "sbin" / "condor_store_cred"),
            "add",
            "-f",
            str(key),
            "-i",
            str(seed),
        )
        seed.unlink()
        if made.returncode != 0:
            raise RuntimeError(f"condor_store_cred: {made.stdout}{made.stderr}")
        self.master = subprocess.Popen(
            # the daemons with stock terminals, in a mount namespace of their own
            terminals.command([str(self.release / "sbin" / "condor_master"), "-f"]),
            cwd=REPO,
            env=self.root_env(),
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "master.stderr", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        (self.root / "master.pid").write_text(f"{self.master.pid}\n")
        try:
            self.wait_up(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_up(self, timeout: float) -> None:
        """Until the collector lists every schedd and the slot (bounded)."""

        def up() -> bool:
            if self.master.poll() is not None:
                raise RuntimeError(f"condor_master exited: {self.log_tail('MasterLog')}")
            schedds = self.run("condor_status", "-schedd", "-af", "Name").stdout.split()
            slots = self.run("condor_status", "-af", "Name").stdout.split()
            return len(schedds) >= self.schedds and bool(slots)

        wait_until(up, timeout, lambda: f"the pool comes up: {self.log_tail('MasterLog')}", 0.3)

    def stop(self, timeout: float = 30) -> None:
        """Remove every job, end the daemons (and whatever they started), remove the files;
        also for a pool another process started (its ``master.pid``)."""
        pid = self._master_pid()
        if pid is not None:
            for name in self.schedd_names():
                self.run("condor_rm", "-all", "-name", name, timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGQUIT)  # fast shutdown
            if self.master is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.master.wait(timeout)
            else:
                self._wait(lambda: not Path(f"/proc/{pid}").exists(), timeout)
        self._kill_leftovers()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.prefix, ignore_errors=True)

    def _master_pid(self) -> int | None:
        if self.master is not None:
            return self.master.pid if self.master.poll() is None else None
        try:
            pid = int((self.root / "master.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def _kill_leftovers(self) -> None:
        """Any process still running from this pool's release with this configuration
        (daemons of a killed master, a job's starter)."""
        mine = str(self.local)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:  # either read fails for a process that has just ended
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if f"CONDOR_CONFIG={self.config}".encode() in environ or mine.encode() in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)

    # --- the tools -------------------------------------------------------------------

    def root_env(self) -> dict[str, str]:
        """What root's own calls of a tool need (an account's call goes through ``bin``)."""
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "CONDOR_CONFIG": str(self.config)}

    def _write_tools(self) -> None:
        """``<dir>/install/bin/condor_*``: this pool's tools for any account (no environment
        needed), as a site's install prefix has them."""
        self.bin.mkdir(parents=True)
        self.prefix.chmod(0o755)
        self.bin.chmod(0o755)
        for tool in TOOLS:
            real = self.release / "bin" / tool
            if not real.exists():
                real = self.release / "sbin" / tool
            (self.bin / tool).write_text(
                f"#!/bin/sh\nexport CONDOR_CONFIG={self.config} PATH={self.bin}:$PATH\n"
                f'exec {real} "$@"\n'
            )
            (self.bin / tool).chmod(0o755)

    def schedd_off(self, name: str) -> bool:
        """Stop one schedd (its jobs keep running), as an outage of that access point."""
        daemon = "SCHEDD2" if name.startswith("schedd2") else "SCHEDD"
        done = self.run("condor_off", "-fast", "-daemon", daemon, timeout=30).returncode == 0
        return done and self._wait(lambda: name not in self._alive_schedds(), 30)

    def schedd_on(self, name: str) -> bool:
        daemon = "SCHEDD2" if name.startswith("schedd2") else "SCHEDD"
        done = self.run("condor_on", "-daemon", daemon, timeout=30).returncode == 0
        return done and self._wait(lambda: name in self._alive_schedds(), 60)

    def _alive_schedds(self) -> list[str]:
        """Schedds that answer a query now (the collector keeps ads of stopped ones)."""
        alive = []
        for name in self.schedd_names():
            # a lone schedd is named after the host, which may not resolve: ask it unnamed
            which = ["-name", name] if "@" in name else []
            if self.run("condor_q", *which, "-totals", timeout=20).returncode == 0:
                alive.append(name)
        return alive

    @staticmethod
    def _wait(predicate, timeout: float) -> bool:
        """Whether ``predicate`` came true in time (a pool's control answers yes or no)."""
        try:
            wait_until(predicate, timeout, "", 0.3)
        except AssertionError:
            return False
        return True

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.local / "log" / name).read_text(errors="replace")
        except OSError as err:
            return str(err)
        return "\n".join(text.splitlines()[-lines:])


class AccountPool(QueueLooks):
    """A real pool as one ordinary account uses it: the interface of the single-account
    tests' localpool (``env``, ``submit_dir``, ``run``, ``submit``, ``command``).

    Real HTCondor runs no job as root, so every command runs as the account, through
    ``sudo`` with exactly ``env``; files the test wrote (as root) into the account's
    directory are handed to it first, as if the account had written them.
    """

    backend = "htcondor"

    def __init__(self, pool: RealPool, user: str) -> None:
        self.real, self.user = pool, user
        self.scratch = pool.home(user)
        self.submit_dir = self.scratch / "submit"
        self.submit_dir.mkdir()
        self.bin = pool.bin
        self.env = {
            "PATH": f"{pool.bin}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.scratch),
            "USER": user,
            "LANG": "C.UTF-8",
        }

    def command(self, *argv: str) -> list[str]:
        """``argv`` as the account, with ``env`` and nothing else (hand-over done)."""
        self._hand_over()
        return [
            "sudo",
            "-n",
            "-u",
            self.user,
            "env",
            "-i",
            *(f"{k}={v}" for k, v in self.env.items()),
            *argv,
        ]

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60, cwd: Path | None = None
    ):
        return subprocess.run(
            self.command(*args),
            cwd=cwd or self.submit_dir,
            text=True,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def submit(self, text: str, name: str = "job.sub", *extra: str) -> str:
        (self.submit_dir / name).write_text(textwrap.dedent(text))
        result = self.run("condor_submit", "-terse", *extra, name)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[0]

    def _hand_over(self) -> None:
        """Root's files in the account's directory become the account's."""
        entry = pwd.getpwnam(self.user)
        for folder, dirs, files in os.walk(self.scratch):
            for name in [*dirs, *files, ""]:
                path = os.path.join(folder, name) if name else folder
                if os.lstat(path).st_uid == 0:
                    os.lchown(path, entry.pw_uid, entry.pw_gid)

    def localpool(self, *args: str):
        import pytest

        pytest.skip("localpool only: drives localpool itself")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realpool", description=__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("dir", type=Path)
    parser.add_argument("--schedds", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=4)
    parser.add_argument("--memory", default="8GB")
    args = parser.parse_args(argv)
    release = release_dir()
    if release is None:
        print(HOW_TO_RUN, file=sys.stderr)
        return 2
    from condorspawner.units import parse_size_mb

    pool = RealPool(
        args.dir.resolve(),
        release,
        schedds=args.schedds,
        cpus=args.cpus,
        memory_mb=parse_size_mb(args.memory),
    )
    if args.action == "start":
        pool.start()
        print(f"pool up; its tools: {pool.bin}")
    else:
        pool.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
