"""Every submit command the templates write is one HTCondor 9.1 knows (the oldest version
the README names): submitted to localpool emulating 9.1, no line goes unused."""

from __future__ import annotations

import sys

import pytest

from condorspawner.render import BatchPayload, InteractivePayload, NotebookPayload, Renderer
from condorspawner.request import JobRequest
from condorspawner.site import parse_site
from tests.harness import Pool

FULL = {"limits": {"gpus": {"max": 2}}, "jobs": {"accounting_group": "group_physics"}}


@pytest.fixture
def pool_9_1(tmp_path):
    root, submit = tmp_path / "pool", tmp_path / "submit"
    submit.mkdir()
    pool = Pool(root, submit)
    started = pool.localpool("start", "--emulate", "9.1", "--cycle-seconds", "0.05")
    assert started.returncode == 0, started.stderr
    yield pool
    pool.localpool("stop", "--remove-jobs")


def payloads() -> dict[str, object]:
    return {
        "notebook": NotebookPayload(
            command=(sys.executable, "-m", "condorspawner.launcher"),
            hub_id="hub",
            user="ann",
            server="fit",
            spawn="0123",
            input_files=("jupyter",),
            output_files=("jupyter",),
        ),
        "batch": BatchPayload(command=("/bin/echo", "hello"), input_files=("in.txt",)),
        "interactive": InteractivePayload(),
    }


@pytest.mark.parametrize("mode", ["site", "image"])
def test_no_template_line_goes_unused_on_9_1(pool_9_1, mode):
    os_list = [{"name": "Rocky9", "label": "Rocky 9", "image": "/img/r9.sif", "default": True}]
    site = parse_site({**FULL, "containers": {"mode": mode, "os": os_list}})
    request = JobRequest.build(
        site,
        cpus=2,
        gpus=1,
        environment={"A": "x y"},
        requirements='TARGET.Arch == "X86_64"',
        label="analysis",
    )
    (pool_9_1.submit_dir / "jupyter").mkdir()
    (pool_9_1.submit_dir / "in.txt").write_text("x")
    for kind, payload in payloads().items():
        job = Renderer(site).render(request, payload)
        job.write(pool_9_1.submit_dir)
        result = pool_9_1.run("condor_submit", "-terse", "job.sub")
        assert result.returncode == 0, (kind, result.stderr)
        unused = [line for line in result.stderr.splitlines() if "was unused" in line]
        # image mode names container_image, which HTCondor has known since 10.0 only
        expected = ["container_image"] if mode == "image" else []
        assert [line.split("'")[1].split(" =")[0] for line in unused] == expected, (kind, unused)
