"""condorsub ssh and ssh-config with real OpenSSH clients (ssh, scp, sftp, rsync) into a
job in its own network namespace on localpool; a throwaway HOME and ``ssh -F``, never
the machine's ~/.ssh."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.harness import CONDORSUB, site_for_tests
from tests.pseudo_terminal import PseudoTerminal


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A throwaway HOME (condorsub writes its slots and configuration there)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def remote(pool, tmp_path, home):
    """A running batch job (``condorsub submit``) and a written ssh configuration."""
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_for_tests(tmp_path / "work"))
    pool.env.update(CONDORSPAWNER_SITE=str(site_file), HOME=str(home))
    submitted = pool.run(CONDORSUB, "submit", "/bin/sleep", "600")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    wrote = pool.run(CONDORSUB, "ssh-config", "--write")
    assert wrote.returncode == 0, wrote.stderr
    config = home / ".ssh" / "condorsub.config"
    assert f"Include {config}" in wrote.stdout
    yield job.split(".")[0], config
    pool.run("condor_rm", job)


def tool(pool, *argv: str, timeout: float = 60):
    return pool.run(*argv, timeout=timeout)


def scratch_of(pool, config: Path, cluster: str) -> Path:
    """The job's working directory, as a remote command sees it."""
    result = tool(pool, "ssh", "-F", str(config), f"condor-{cluster}", "pwd")
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def test_ssh_scp_sftp_rsync_reach_the_job_through_condor_ssh_to_job(pool, remote, tmp_path):
    cluster, config = remote
    ssh = ["ssh", "-F", str(config)]
    here_net = os.readlink("/proc/self/ns/net")

    # a command in the job: its network namespace (no network path into it), as its owner
    result = tool(pool, *ssh, f"condor-{cluster}", "hostname; id -un; readlink /proc/self/ns/net")
    assert result.returncode == 0, result.stderr
    hostname, owner, job_net = result.stdout.split()
    assert hostname == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert owner == pool.ad(f"{cluster}.0")["Owner"]
    assert job_net != here_net
    assert tool(pool, *ssh, f"condor-{cluster}.0", "exit 3").returncode == 3
    workdir = scratch_of(pool, config, cluster)

    # scp both ways (SFTP protocol, and the old scp protocol with -O)
    (tmp_path / "up.txt").write_text("to the job\n")
    for flags in ([], ["-O"]):
        result = tool(
            pool,
            "scp",
            "-F",
            str(config),
            *flags,
            str(tmp_path / "up.txt"),
            f"condor-{cluster}:up{len(flags)}.txt",
        )
        assert result.returncode == 0, result.stderr
        assert (workdir / f"up{len(flags)}.txt").read_text() == "to the job\n"
    (workdir / "down.txt").write_text("from the job\n")
    result = tool(pool, "scp", "-F", str(config), f"condor-{cluster}:down.txt", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "down.txt").read_text() == "from the job\n"

    # sftp in batch mode
    batch = tmp_path / "batch"
    batch.write_text(f"put {tmp_path / 'up.txt'} via-sftp.txt\nget down.txt {tmp_path}/got.txt\n")
    result = tool(pool, "sftp", "-F", str(config), "-b", str(batch), f"condor-{cluster}")
    assert result.returncode == 0, result.stderr
    assert (workdir / "via-sftp.txt").read_text() == "to the job\n"
    assert (tmp_path / "got.txt").read_text() == "from the job\n"

    # rsync -e ssh of a directory, there and back
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    rsh = f"ssh -F {config}"
    result = tool(pool, "rsync", "-a", "-e", rsh, f"{tree}/", f"condor-{cluster}:tree/")
    assert result.returncode == 0, result.stderr
    assert (workdir / "tree" / "sub" / "b.bin").read_bytes() == (
        tree / "sub" / "b.bin"
    ).read_bytes()
    (workdir / "tree" / "made-in-job").write_text("c\n")
    back = tmp_path / "back"
    result = tool(pool, "rsync", "-a", "-e", rsh, f"condor-{cluster}:tree/", f"{back}/")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in back.rglob("*")) == ["a.txt", "b.bin", "made-in-job", "sub"]

    # connections opened at the same moment (editors do) each find their own session's key
    codes: list[int] = []

    def one(n: int) -> None:
        codes.append(tool(pool, *ssh, f"condor-{cluster}", f"echo {n}").returncode)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert codes == [0, 0, 0]

    # nothing of a session stays behind: no key, no host key, no known_hosts entry of ours
    slots = Path.home() / ".condorsub" / "ssh"
    left = [p.name for p in slots.rglob("*") if p.name.startswith(("key-", "known_hosts-"))]
    assert left == []
    assert not (Path.home() / ".ssh" / "known_hosts").exists()


def test_condorsub_ssh_exit_codes_and_clear_errors(pool, remote):
    cluster, config = remote
    result = tool(pool, CONDORSUB, "ssh", cluster, "echo", "in the job; exit 7")
    assert (result.returncode, result.stdout) == (7, "in the job\n")
    result = tool(pool, CONDORSUB, "ssh", f"{cluster}.0", "true")
    assert result.returncode == 0, result.stderr
    # bad ids and jobs that are not there or not running: one line each
    for job, code, text in [
        ("nope", 2, "'nope' is not a job id"),
        ("99999", 1, "job 99999.0 not found"),
    ]:
        result = tool(pool, CONDORSUB, "ssh", job, "true")
        assert result.returncode == code and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("condorsub: ") and text in result.stderr
    held = pool.run("condor_hold", "-reason", "for the test", cluster)
    assert held.returncode == 0, held.stderr
    result = tool(pool, CONDORSUB, "ssh", cluster, "true")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"job {cluster}.0 is held: for the test" in result.stderr
    # plain ssh says the same through its ProxyCommand
    result = tool(pool, "ssh", "-F", str(config), "condor-99999", "true")
    assert result.returncode == 255
    assert "condorsub: job 99999.0 not found" in result.stderr
    result = tool(pool, "ssh", "-F", str(config), "condor-x1", "true")
    assert "condorsub: condor-x1: not a job's host name" in result.stderr


def test_condorsub_ssh_waits_out_a_starter_that_is_not_ready_yet(pool, remote):
    """A real schedd answers "retry" for seconds after a job starts (its starter's address is
    not known yet): condorsub ssh and ssh's ProxyCommand wait for it (-auto-retry)."""
    _cluster, config = remote
    pool.restart("--ssh-ready-delay", "3", "--cycle-seconds", "0.05")
    job = pool.submit("executable = /bin/sleep\narguments = 600\nqueue\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    result = tool(pool, CONDORSUB, "ssh", job, "echo", "in")
    assert (result.returncode, result.stdout) == (0, "in\n"), result.stderr
    job = pool.submit("executable = /bin/sleep\narguments = 600\nqueue\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    result = tool(pool, "ssh", "-F", str(config), f"condor-{job.split('.')[0]}", "echo in")
    assert (result.returncode, result.stdout) == (0, "in\n"), result.stderr


def test_condor_ssh_to_job_fills_in_the_ssh_commands_placeholders(pool):
    """localpool builds the -ssh program's arguments as HTCondor does (ssh_to_job.cpp)."""
    job = pool.submit("executable = /bin/sleep\narguments = 600\nqueue\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    program = "/usr/bin/printf '%%s\\n' %u%% 'two words'"  # one argument a line
    result = pool.ssh_to_job("-ssh", program, job, "cmd")
    assert result.returncode == 0, result.stderr
    words = result.stdout.splitlines()
    owner = pool.ad(job)["Owner"]
    assert words[:2] == [f"{owner}%", "two words"]
    assert "-S" not in words  # only for ssh itself
    assert f"-oUser={owner}" in words and words[-2].startswith("condor-job.")
    assert words[-1] == "cmd"
    proxy = next(w for w in words if w.startswith("-oProxyCommand="))
    assert " -proxy " in proxy
    bad = pool.run("condor_ssh_to_job", "-ssh", "/bin/echo %q", job)
    assert bad.returncode == 1 and "Unexpected %q in ssh command" in bad.stderr


def test_ssh_config_prints_writes_0600_and_includes_once(home, tmp_path):
    def condorsub(*args: str):
        return subprocess.run(
            [CONDORSUB, *args], capture_output=True, text=True, env={**os.environ}, timeout=30
        )

    printed = condorsub("ssh-config")
    assert printed.returncode == 0 and printed.stdout.startswith("# condorsub ssh-config")
    assert "Host condor-* " in printed.stdout and "ssh-proxy '%n'\n" in printed.stdout
    assert not (home / ".ssh").exists()  # printing writes nothing
    # ssh itself accepts it
    checked = subprocess.run(
        ["ssh", "-G", "-F", "/dev/stdin", "condor-12.3"],
        input=printed.stdout,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "stricthostkeychecking true" in checked.stdout
    assert f"identityfile {home}/.condorsub/ssh/%n/key-0" in checked.stdout
    assert f"{home}/.condorsub/ssh/condor-12.3/known_hosts-0" in checked.stdout

    other = tmp_path / "elsewhere" / "my.config"
    wrote = condorsub("ssh-config", "--write", str(other))
    assert wrote.returncode == 0 and f"Include {other}" in wrote.stdout
    assert stat.S_IMODE(other.stat().st_mode) == 0o600
    assert not (home / ".ssh" / "config").exists()  # never edited unless asked

    user_config = home / ".ssh" / "config"
    user_config.parent.mkdir()
    user_config.write_text("Host *\n    ServerAliveInterval 60\n")
    user_config.chmod(0o640)
    for _ in range(2):
        added = condorsub("ssh-config", "--include")
        assert added.returncode == 0, added.stderr
    written = home / ".ssh" / "condorsub.config"
    text = user_config.read_text()
    assert text.count(f"Include {written}") == 1
    assert text.index("Include") < text.index("Host *") and text.endswith(
        "Host *\n    ServerAliveInterval 60\n"
    )
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o640
    backup = home / ".ssh" / "config.condorsub-backup"
    assert backup.read_text() == "Host *\n    ServerAliveInterval 60\n"
    unwritable = condorsub("ssh-config", "--write", "/proc/nope/x.config")
    assert unwritable.returncode == 1 and unwritable.stderr.count("\n") == 1
    assert unwritable.stderr.startswith("condorsub: cannot write")


def test_ssh_into_a_condorsub_shell_session(pool, tmp_path, home):
    """A ``condorsub shell`` session is a running job too: ssh condor-JOB reaches it."""
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_for_tests(tmp_path / "work"))
    pool.env.update(CONDORSPAWNER_SITE=str(site_file), HOME=str(home))
    assert pool.run(CONDORSUB, "ssh-config", "--write").returncode == 0
    shell = [CONDORSUB, "shell", "--os", "Debian12"]
    with PseudoTerminal(shell, env=pool.env, cwd=pool.submit_dir) as terminal:
        terminal.read_until(lambda _: terminal.at_prompt(quiet=0), 40, "the shell's prompt")
        ads = pool.run("condor_q", "-json", "-constraint", "JobStatus == 2").stdout
        (job,) = [str(ad["ClusterId"]) for ad in json.loads(ads)]
        config = home / ".ssh" / "condorsub.config"
        result = pool.run("ssh", "-F", str(config), f"condor-{job}", "echo $_CONDOR_JOB_AD")
        assert result.returncode == 0, result.stderr
        assert Path(result.stdout.strip()).name == ".job.ad"
        terminal.type(b"exit\n")
        assert terminal.exit_code(timeout=30) == 0


def test_the_proxy_command_hands_hostile_names_to_no_shell(home, tmp_path):
    """ssh runs the ProxyCommand with a shell after putting the host name in (ssh
    before 9.6 lets any name through, CVE-2023-51385): a shell must make of it that
    name; names that could leave its quotes are not matched; no user name goes in."""
    config = tmp_path / "c.config"
    made = subprocess.run(
        [CONDORSUB, "ssh-config", "--write", str(config)], capture_output=True, timeout=30
    )
    assert made.returncode == 0, made.stderr

    def proxy_command(host: str) -> str | None:
        settings = subprocess.run(
            ["ssh", "-G", "-F", str(config), "-l", "bob", host],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        found = [x[13:] for x in settings.splitlines() if x.startswith("proxycommand ")]
        return found[0] if found else None

    proxy = proxy_command("condor-12.3")
    assert proxy is not None and "%r" not in proxy and "%u" not in proxy
    assert proxy_command("condor-12") == proxy_command("condor-12.0") == proxy
    assert proxy_command("condor-1/x") is None and proxy_command("other-12") is None
    arguments = proxy.split(" ssh-proxy ", 1)[1]
    marker = tmp_path / "ran"
    for host in [f"condor-1;touch {marker}", f"condor-1$(touch {marker})", "condor-1 `id`"]:
        line = "printf '%s\\0' " + arguments.replace("%n", host)
        shell = subprocess.run(
            ["sh", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert shell.stdout.split("\0")[:-1] == [host] and not marker.exists()
    # a quote would leave the quotes (any shell), a backslash too (fish): not matched.
    # (This machine's ssh refuses such names itself, so the patterns are read here.)
    host_line = next(x for x in config.read_text().splitlines() if x.startswith("Host "))
    assert shlex.split(host_line)[1:] == ["condor-*", "!*'*", "!*\\*", "!*/*"]


def test_ssh_config_odd_paths_stay_one_word_and_never_add_lines(tmp_path, monkeypatch):
    """A blank, '#' or quote in HOME or the written path is quoted; a line break is refused."""
    odd = tmp_path / "my h#me 'x\""
    odd.mkdir()
    monkeypatch.setenv("HOME", str(odd))
    monkeypatch.delenv("CONDORSPAWNER_SITE", raising=False)

    def condorsub(*args: str, **env: str):
        return subprocess.run(
            [CONDORSUB, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=30,
        )

    assert condorsub("ssh-config", "--include").returncode == 0
    user_config = odd / ".ssh" / "config"
    checked = subprocess.run(
        ["ssh", "-G", "-F", str(user_config), "condor-12.3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "ssh-proxy '%n'\n" in checked.stdout  # the Include was followed
    slots = f"{odd}/.condorsub/ssh/condor-12.3"
    assert f"identityfile {odd}/.condorsub/ssh/%n/key-0\n" in checked.stdout
    known = next(x for x in checked.stdout.splitlines() if x.startswith("userknownhostsfile "))
    assert known.split(" ", 1)[1] == " ".join(f"{slots}/known_hosts-{n}" for n in range(4))

    before = user_config.read_text()
    for args, env in [
        (["ssh-config", "--write", str(tmp_path / "a\nHost *\n ProxyCommand x")], {}),
        (["ssh-config"], {"CONDORSPAWNER_SITE": "/tmp/s\nHost *"}),
    ]:
        refused = condorsub(*args, **env)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "line break" in refused.stderr and refused.stdout == ""
    assert user_config.read_text() == before
    assert not list(tmp_path.glob("a*"))
