"""One job's starter: scratch directory, file transfer, environment, chirp, the job.

Run by the pool process as ``python -m localpool.startd.starter POOLDIR JOBID``,
inside the job's own network namespace when the pool has them (then only
loopback exists: the job reaches nothing outside, and nothing reaches it but
``condor_ssh_to_job``). It runs the job as its owner, and on SIGTERM stops it
the way a vacate, hold or removal asks (the word is in the job dir's
``stop`` file), transferring output where HTCondor would (``localpool.startd.transfer``).

Root does only the pool's own part (the job directory under ``jobs/``, the
scratch directory's creation, the namespace): every file of the user (input
and output files, stdin/stdout/stderr, the scratch directory's contents,
the spooled output) is read and written as the job's owner (``privs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from localpool.ads import Ad, format_long
from localpool.negotiator.matchmaker import machine_ad
from localpool.schedd import eventlog
from localpool.schedd.jobstate import (
    JOB_PID_FILE,
    RESULT_FILE,
    STARTER_FILE,
    STOP_FILE,
    schedd_address,
    shadow_spawned,
)
from localpool.schedd.schedds import name_of
from localpool.schedd.store import Store
from localpool.security import privs
from localpool.startd import transfer
from localpool.startd.chirp import ChirpServer
from localpool.submit.v2syntax import environment_from_raw, split_words

# What HTCondor sets in every job from the CPUs it got (recorded on a 25.0 pool).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "JULIA_NUM_THREADS",
    "CUBACORES",
    "GOMAXPROCS",
    "OMP_THREAD_LIMIT",
    "PYTHON_CPU_COUNT",
    "ROOT_MAX_THREADS",
    "TF_LOOP_PARALLEL_ITERATIONS",
    "TF_NUM_THREADS",
)


class Starter:
    """Everything about running one job, start to finish."""

    def __init__(self, store: Store, job_id: str, namespace: bool = False) -> None:
        self.store = store
        self.namespace = namespace
        self.job_id = job_id
        self.job_dir = store.job_dir(job_id)
        self.config = store.config()
        self.ad: Ad = store.read().jobs[job_id]
        self.sandbox = self.ad.get("ShouldTransferFiles", "IF_NEEDED").upper() == "YES"
        self.iwd = Path(self.ad["Iwd"])
        self.scratch = store.execute_dir / f"dir_{os.getpid()}"
        self.owner = _account(self.ad["Owner"])
        self.user = privs.Account(
            self.owner.pw_name, self.owner.pw_uid, self.owner.pw_gid, self.owner.pw_dir
        )
        self.stop_requested = False
        remote = self.ad.get("RemoteIwd")
        self.workdir = self.scratch if self.sandbox else Path(remote) if remote else self.iwd
        self.process: subprocess.Popen[bytes] | None = None

    # --- set-up -------------------------------------------------------------

    def prepare(self) -> None:
        if self.namespace:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        self.store.execute_dir.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(mode=0o700)
        self._chown(self.scratch)
        if self.sandbox:
            eventlog.transfer(self.ad, "Started transferring input files")
            with privs.as_user(self.user):
                transfer.transfer_in(self.ad, self.iwd, self.scratch)
            eventlog.transfer(self.ad, "Finished transferring input files")

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0 and self.owner.pw_uid != 0:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid, follow_symlinks=False)

    def environment(self, chirp_config: Path | None) -> dict[str, str]:
        """The job's environment: its own plus what HTCondor's starter sets."""
        env: dict[str, str] = {}
        if self.ad.get("Environment"):
            env.update(environment_from_raw(self.ad["Environment"]))
        elif self.ad.get("Env"):
            env.update(e.split("=", 1) for e in self.ad["Env"].split(";") if "=" in e)
        cpus = str(self.ad.get("LocalpoolSlotCpus", 1))
        slot = f"slot1_{self.ad.get('LocalpoolSlotSlotId', 1)}"
        workdir = str(self.workdir)
        htcondor = {
            "BATCH_SYSTEM": "HTCondor",
            "HOME": self.owner.pw_dir,
            "_CONDOR_SCRATCH_DIR": str(self.scratch),
            "_CONDOR_SLOT": slot,
            "_CONDOR_JOB_AD": str(self.scratch / ".job.ad"),
            "_CONDOR_MACHINE_AD": str(self.scratch / ".machine.ad"),
            "_CONDOR_JOB_IWD": workdir,
            "_CONDOR_JOB_PIDS": "",
            "_CONDOR_BIN": str(self.store.bin_dir),
            "CONDOR_STARTER_PID": str(os.getpid()),
            "TMPDIR": str(self.scratch),
            "TMP": str(self.scratch),
            "TEMP": str(self.scratch),
            "APPTAINER_CACHEDIR": str(self.scratch),
            "SINGULARITY_CACHEDIR": str(self.scratch),
            "_CONDOR_AssignedGPUs": "10000",
            "CUDA_VISIBLE_DEVICES": "10000",
            "GPU_DEVICE_ORDINAL": "10000",
            "NVIDIA_VISIBLE_DEVICES": "none",
            **dict.fromkeys(THREAD_VARIABLES, cpus),
        }
        if self.ad.get("JobUniverse") == 7:  # the schedd tells a scheduler-universe job its id
            htcondor["CONDOR_ID"] = self.job_id
            # and it runs on that schedd's access point: its tools ask that schedd
            htcondor["_CONDOR_SCHEDD_NAME"] = name_of(self.store)
        if chirp_config is not None:
            htcondor["_CONDOR_CHIRP_CONFIG"] = str(chirp_config)
            htcondor["_CHIRP_DELAYED_UPDATE_PREFIX"] = "Chirp*"
        env.update(htcondor)
        return env

    # --- the job ------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.prepare()
        chirp = None
        chirp_config = None
        if self.ad.get("WantIOProxy"):
            chirp = ChirpServer(self.store, self.job_id)
            chirp_config = self.scratch / ".chirp.config"
            with privs.as_user(self.user):
                chirp_config.write_text(f"127.0.0.1 {chirp.port} {chirp.cookie}\n")
                chirp_config.chmod(0o700)
        env = self.environment(chirp_config)
        with privs.as_user(self.user):
            self._write_ads(env)
        workdir = self.workdir
        if "Arguments" in self.ad:
            args = split_words(self.ad["Arguments"])
        else:
            args = self.ad.get("Args", "").split()
        exe = self.ad["Cmd"]
        if self.sandbox and self.ad.get("TransferExecutable", True):
            exe = str(self.scratch / Path(exe).name)
        with privs.as_user(self.user):
            stdout, stderr, stdin = self._streams()
            try:  # the job's directory, opened as its owner: root never follows the path
                cwd_fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
            except OSError as err:
                print(f"starter: cannot enter {workdir}: {err}", file=sys.stderr)
                return {"exit_code": 1}
        eventlog.executing(
            self.ad,
            self.ad.get("StartdIpAddr", schedd_address(self.config)),
            self.ad.get("RemoteHost", ""),
            str(self.scratch),
            {
                "Cpus": self.ad.get("LocalpoolSlotCpus", 1),
                "Disk": self.ad.get("LocalpoolSlotDisk", 0),
                "GPUs": self.ad.get("LocalpoolSlotGPUs", 0),
                "Memory": self.ad.get("LocalpoolSlotMemory", 0),
            },
        )
        switch = os.geteuid() == 0 and self.owner.pw_uid != 0
        try:
            self.process = subprocess.Popen(
                [exe, *args],
                cwd=f"/proc/self/fd/{cwd_fd}",
                pass_fds=(cwd_fd,),
                env=env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
                user=self.owner.pw_uid if switch else None,
                group=self.owner.pw_gid if switch else None,
                extra_groups=os.getgrouplist(self.owner.pw_name, self.owner.pw_gid)
                if switch
                else None,
            )
        except OSError as err:
            print(f"starter: cannot run {exe}: {err}", file=sys.stderr)
            return {"exit_code": 127}
        finally:
            for stream in (stdout, stderr, stdin):
                stream.close()
            os.close(cwd_fd)
        # the job runs in a process group of its own: whoever cleans up must know it
        (self.job_dir / JOB_PID_FILE).write_text(str(self.process.pid))
        self._write_session_info(env, workdir)  # the job runs: ssh may come in
        status = self._wait()
        if chirp is not None:
            chirp.close()
        stop = self._stop_kind()
        if stop is not None:
            if stop in ("vacate", "hold") and (
                self.ad.get("WhenToTransferOutput", "ON_EXIT").upper() == "ON_EXIT_OR_EVICT"
            ):
                spool = self.ad.get("SpoolOnEvict", True) is not False
                target = self._spool() if spool else self.iwd
                with privs.as_user(self.user):
                    self._transfer_out(target)
            return {"evicted": True, "stop": stop}
        with privs.as_user(self.user):
            self._transfer_out(self.iwd)
        if status < 0:
            return {"signal": -status}
        return {"exit_code": status}

    def _streams(self) -> tuple[Any, Any, Any]:
        def path(attr: str, sandbox_name: str) -> str:
            if self.sandbox and attr != "In":
                return str(self.scratch / sandbox_name)
            value = self.ad.get(attr, "/dev/null")
            return value if os.path.isabs(value) else str(self.iwd / value)

        stdin = open(path("In", ""), "rb")  # noqa: SIM115
        stdout = open(path("Out", "_condor_stdout"), "ab")  # noqa: SIM115
        stderr = open(path("Err", "_condor_stderr"), "ab")  # noqa: SIM115
        return stdout, stderr, stdin

    def _spool(self) -> Path:
        """The job's spool directory: made by the pool, owned (and written) by the job's owner."""
        target = self.store.spool_dir / self.job_id
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._chown(target)
        return target

    def _write_ads(self, env: dict[str, str]) -> None:
        job = dict(self.ad)
        shadow_spawned(job)  # the shadow hands the starter the ad with this run's dates
        for key in list(job):
            if key.startswith("Localpool"):
                del job[key]
        machine = machine_ad(self.config)
        machine.update(
            Name=self.ad.get("RemoteHost", ""),
            Cpus=self.ad.get("LocalpoolSlotCpus"),
            Memory=self.ad.get("LocalpoolSlotMemory"),
            SlotType="Dynamic",
        )
        for name, ad in ((".job.ad", job), (".machine.ad", machine)):
            (self.scratch / name).write_text(format_long([ad]))

    def _write_session_info(self, env: dict[str, str], workdir: Path) -> None:
        """What condor_ssh_to_job needs to start sshd as the job sees the world."""
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        fd = os.open(self.job_dir / "job_env.sh", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as f:
            f.write(exports)
        info = {
            "pid": os.getpid(),
            "scratch": str(self.scratch),
            "workdir": str(workdir),
            "uid": self.owner.pw_uid,
            "gid": self.owner.pw_gid,
            "user": self.owner.pw_name,
            "home": self.owner.pw_dir,
            "started": time.time(),
            "namespace": self.namespace,
        }
        tmp = self.job_dir / f".{STARTER_FILE}.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.job_dir / STARTER_FILE)

    def _wait(self) -> int:
        assert self.process is not None
        signal.signal(signal.SIGTERM, self._on_stop)
        while True:
            try:
                return self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.stop_requested:
                    return self._kill_job()

    def _on_stop(self, *_: Any) -> None:
        self.stop_requested = True

    def _stop_kind(self) -> str | None:
        if not self.stop_requested:
            return None
        try:
            return (self.job_dir / STOP_FILE).read_text().strip() or "vacate"
        except OSError:
            return "vacate"

    def _kill_job(self) -> int:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    # --- output -------------------------------------------------------------

    def _transfer_out(self, target: Path) -> None:
        if self.sandbox:
            transfer.transfer_out(self.ad, self.scratch, target)

    def cleanup(self) -> None:
        with privs.as_user(self.user):  # the job may have left a tree root cannot enter
            shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


def _account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return pwd.getpwuid(os.getuid())


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    store, job_id = Store(args[0]), args[1]
    starter = Starter(store, job_id, namespace=args[2:3] == ["netns"])
    privs.adopt_groups(starter.user)  # before the chirp server's thread starts
    signal.signal(signal.SIGTERM, starter._on_stop)
    result: dict[str, Any]
    try:
        result = starter.run()
    except Exception as err:
        print(f"starter: {err!r}", file=sys.stderr)
        result = {"exit_code": 1, "starter_error": repr(err)}
    finally:
        starter.cleanup()
    tmp = starter.job_dir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result))
    tmp.replace(starter.job_dir / RESULT_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
