"""The pool's state on disk: configuration, the job queue, the history.

The pool process and its request children share it through one lock file,
so the pool process can be stopped and started again without losing a job:
the queue is a JSON file rewritten atomically under the lock, the history an
append-only file of finished job ads. The pool directory is traversable by
all (its socket and ``bin/`` are for everybody); every state file is 0600
and ``jobs/`` 0700: only the pool (root) reads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localpool.ads import Ad, Expr

DEFAULT_DIR_ENV = "LOCALPOOL_DIR"


def default_dir() -> Path:
    """``$LOCALPOOL_DIR``, else a per-user directory under /tmp."""
    env = os.environ.get(DEFAULT_DIR_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"localpool-{os.getuid()}"


@dataclass
class PoolConfig:
    """The execute point's slot and the pool's timing, kept in ``pool.json``."""

    cpus: int = 8
    memory_mb: int = 16384
    disk_mb: int = 65536
    gpus: int = 0
    container_os: list[str] = field(default_factory=lambda: ["Rocky9", "Debian12"])
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "localhost")
    network_namespaces: str = "auto"  # auto | on (both: "isolated") | off ("shared")
    cycle_seconds: float = 0.2  # how often the pool process matches and reaps
    periodic_seconds: float = 2.0  # PERIODIC_EXPR_INTERVAL
    # "retry" answers from condor_ssh_to_job for this long after a job starts: a real
    # 25.0 pool's window with STARTER_INITIAL_UPDATE_INTERVAL = 0, as the admin guide
    # recommends (0.94 s measured; 9.73 s with HTCondor's defaults: benchmarks.ssh_window)
    ssh_ready_delay: float = 1.0
    # a started job shows JobStatus 2 with the previous run's JobCurrentStartDate (or none)
    # until its shadow spawns, at the first cycle this long after the match: the real
    # schedd marks a job running and sets the date only when it spawns the shadow
    shadow_delay: float = 0.0
    emulate: str = "25.0"  # the HTCondor version whose submit commands the pool knows
    schedds: int = (
        1  # access points in the pool, each with its own queue (localpool.schedd.schedds)
    )

    @property
    def network(self) -> str:
        """``isolated`` (a network namespace per job, when possible) or ``shared``."""
        return "shared" if self.network_namespaces == "off" else "isolated"


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$expr" in obj:
        return Expr(obj["$expr"])
    return obj


def _default(value: Any) -> Any:
    raise TypeError(f"cannot store {value!r}")


def dumps_ad(ad: Ad) -> str:
    """One ad as JSON, expressions kept apart from strings."""
    return json.dumps(
        {k: {"$expr": str(v)} if isinstance(v, Expr) else v for k, v in ad.items()},
        default=_default,
        ensure_ascii=False,
    )


def loads_ad(text: str) -> Ad:
    return json.loads(text, object_hook=_hook)


@dataclass
class Queue:
    """The job queue: ads by ``C.P`` id, and the next cluster number."""

    next_cluster: int = 1
    jobs: dict[str, Ad] = field(default_factory=dict)


class Store:
    """The pool directory and everything in it; one schedd's queue and history.

    Schedd 1 keeps its queue in the pool directory itself; schedd ``k`` > 1 in
    ``schedds/<k>/`` (its own ids, queue, history, job and spool directories).
    ``Store("<pool>/schedds/<k>")`` is that schedd's store (how a starter is told).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, schedd: int = 1) -> None:
        path = (Path(root) if root is not None else default_dir()).absolute()
        if path.parent.name == "schedds" and path.name.isdigit():
            path, schedd = path.parent.parent, int(path.name)
        self.root = path
        self.schedd = schedd
        self.qdir = path if schedd == 1 else path / "schedds" / str(schedd)

    def for_schedd(self, schedd: int) -> Store:
        """The same pool, another schedd's queue."""
        return Store(self.root, schedd)

    # layout
    @property
    def queue_file(self) -> Path:
        return self.qdir / "queue.json"

    @property
    def history_file(self) -> Path:
        return self.qdir / "history.jsonl"

    @property
    def config_file(self) -> Path:
        return self.root / "pool.json"

    @property
    def execute_dir(self) -> Path:
        return self.root / "execute"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def pid_file(self) -> Path:
        return self.root / "pool.pid"

    @property
    def socket_file(self) -> Path:
        return self.root / "pool.sock"

    @property
    def spool_dir(self) -> Path:
        return self.qdir / "spool"

    def prepare(self) -> None:
        """The directory layout and its modes (the pool process does this at start)."""
        for path, mode in (
            (self.root, 0o755),
            (self.qdir, 0o755),
            (self.qdir / "jobs", 0o700),
            (self.execute_dir, 0o755),
            (self.spool_dir, 0o755),
        ):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        for name in ("queue.json", "queue.lock", "history.jsonl", "pool.json", "pool.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.qdir / name).chmod(0o600)

    def job_dir(self, job_id: str) -> Path:
        """Where the starter of one job keeps its pid, result and ssh session state."""
        return self.qdir / "jobs" / job_id

    def exists(self) -> bool:
        return self.config_file.exists()

    # configuration
    def config(self) -> PoolConfig:
        try:
            data = json.loads(self.config_file.read_text())
        except FileNotFoundError:
            raise PoolNotFound(self.root) from None
        return PoolConfig(**data)

    def write_config(self, config: PoolConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.config_file, json.dumps(asdict(config), indent=2) + "\n")

    # queue
    @contextlib.contextmanager
    def _lock(self, kind: int) -> Iterator[None]:
        self.qdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.qdir / "queue.lock", os.O_RDWR | os.O_CREAT, 0o600)
        with open(fd, "a") as lock:
            fcntl.flock(lock, kind)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> Queue:
        try:
            text = self.queue_file.read_text()
        except FileNotFoundError:
            return Queue()
        data = json.loads(text, object_hook=_hook)
        return Queue(next_cluster=data["next_cluster"], jobs=data["jobs"])

    def read(self) -> Queue:
        """A consistent snapshot of the queue (shared lock)."""
        with self._lock(fcntl.LOCK_SH):
            return self._load()

    @contextlib.contextmanager
    def update(self) -> Iterator[Queue]:
        """The queue for changing; written back atomically unless the block raises."""
        with self._lock(fcntl.LOCK_EX):
            queue = self._load()
            yield queue
            jobs = ",\n".join(f"{json.dumps(k)}: {dumps_ad(ad)}" for k, ad in queue.jobs.items())
            _atomic_write(
                self.queue_file,
                f'{{"next_cluster": {queue.next_cluster},\n"jobs": {{\n{jobs}\n}}}}\n',
            )
            self.written = self.stamp()

    written: tuple[int, int, int] | None = None  # stamp of this object's last queue write

    def stamp(self) -> tuple[int, int, int] | None:
        """Identity of the queue file's current version (a rewrite is a new inode)."""
        try:
            st = self.queue_file.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    # history
    def add_history(self, ads: list[Ad]) -> None:
        """Append finished jobs (call with the queue lock held, from ``update``)."""
        fd = os.open(self.history_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a", encoding="utf-8") as f:
            for ad in ads:
                f.write(dumps_ad(ad) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def history(self) -> list[Ad]:
        """Finished jobs, newest first."""
        with self._lock(fcntl.LOCK_SH):
            try:
                lines = self.history_file.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return []
        return [loads_ad(line) for line in reversed(lines) if line.strip()]


class PoolNotFound(RuntimeError):
    """No pool in this directory: ``localpool start`` makes one."""

    def __init__(self, root: Path) -> None:
        super().__init__(f"no localpool in {root} (run 'localpool start', or set LOCALPOOL_DIR)")
        self.root = root


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
