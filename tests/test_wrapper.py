"""wrapper.sh under real bash: login environment, HTCondor's per-job values kept, exec."""

import subprocess

import pytest

from condorspawner.render import THREAD_VARIABLES


@pytest.fixture
def job_dir(tmp_path, renderer):
    """A scratch directory as a starter prepares it, and a home whose profile meddles."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "wrapper.sh").write_text(renderer.wrapper())
    (scratch / "wrapper.sh").chmod(0o755)
    (scratch / ".job.ad").write_text('ClusterId = 7\nRequestCpus = 3\nOwner = "alice"\n')
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_profile").write_text(
        "export FROM_PROFILE=yes\nexport OMP_NUM_THREADS=64\nexport TMPDIR=/wrong\ncd /\n"
    )
    return scratch, home


def run_wrapper(scratch, home, *command, cpus_env="1"):
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "_CONDOR_SCRATCH_DIR": str(scratch),
        "_CONDOR_JOB_AD": str(scratch / ".job.ad"),
        "TMPDIR": str(scratch),
        "OMP_NUM_THREADS": cpus_env,
    }
    return subprocess.run(
        [str(scratch / "wrapper.sh"), *command],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_payload_gets_login_environment_and_job_values(job_dir):
    scratch, home = job_dir
    script = "; ".join(f"echo {v}=${v}" for v in THREAD_VARIABLES)
    result = run_wrapper(
        scratch,
        home,
        "/bin/sh",
        "-c",
        script + "; echo TMPDIR=$TMPDIR; echo PWD=$(pwd); echo P=$FROM_PROFILE",
    )
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    for var in THREAD_VARIABLES:
        assert f"{var}=3" in lines
    assert f"TMPDIR={scratch}" in lines
    assert f"PWD={scratch}" in lines
    assert "P=yes" in lines


def test_arguments_arrive_intact_and_exit_code_passes_through(job_dir):
    scratch, home = job_dir
    result = run_wrapper(
        scratch,
        home,
        "/bin/sh",
        "-c",
        'printf "%s|" "$@"; exit 7',
        "sh",
        "two words",
        "",
        "it's",
        "$HOME",
    )
    assert result.returncode == 7
    assert result.stdout == "two words||it's|$HOME|"


def test_without_a_job_ad_htcondors_own_value_is_kept(job_dir):
    scratch, home = job_dir
    (scratch / ".job.ad").unlink()
    result = run_wrapper(scratch, home, "/bin/sh", "-c", "echo $MKL_NUM_THREADS", cpus_env="5")
    assert result.stdout.strip() == "5"


def test_no_command_is_an_error(job_dir):
    scratch, home = job_dir
    result = run_wrapper(scratch, home)
    assert result.returncode == 2 and "no command to run" in result.stderr
