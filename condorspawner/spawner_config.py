"""CondorSpawner's configuration: every trait an admin sets, with its help text, and
the hooks of what a user chooses (the options form, checked by :class:`OptionsForm`)."""

from __future__ import annotations

import sys
from typing import Any

from jupyterhub.spawner import Spawner
from traitlets import Callable, Float, Integer, List, Unicode, Union, default

from condorspawner import form
from condorspawner.accounts import DEFAULT_DENIED
from condorspawner.condor import Condor
from condorspawner.options import OptionsForm
from condorspawner.pool_status import PoolStatus
from condorspawner.request import JobRequest
from condorspawner.site import cached_site


class SpawnerConfig(Spawner):
    """The traits of CondorSpawner, every one an admin sets (its behaviour is in
    :mod:`~condorspawner.spawner`; ``c.CondorSpawner.<trait>`` configures these).

    An abstract base: JupyterHub refuses Spawner subclasses that do not redefine
    start, stop and poll, so these say where they are."""

    async def start(self) -> tuple[str, int]:
        raise NotImplementedError("CondorSpawner starts servers")

    async def stop(self, now: bool = False) -> None:
        raise NotImplementedError("CondorSpawner stops servers")

    async def poll(self) -> int | None:
        raise NotImplementedError("CondorSpawner polls servers")

    _options: OptionsForm | None = None  # made on first use, for the spawner's user

    site_file = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The site file (TOML). Default: $CONDORSPAWNER_SITE, else
        /etc/condorspawner/site.toml, else built-in defaults. Read and checked when
        the spawner is made (at hub start-up for every running server).""",
    )
    hub_id = Unicode(
        config=True,
        help="""Marks this hub's jobs (job attribute CondorSpawnerHub), so one query finds
        them all and two hubs on one schedd never touch each other's jobs.""",
    )

    @default("hub_id")
    def _default_hub_id(self) -> str:
        import socket

        return f"jupyterhub@{socket.getfqdn()}"

    submit_root = Unicode(
        "{home}/.condorspawner",
        config=True,
        help="""Where each server's job files (description, wrapper, logs, the private
        token file) are written, in the user's name. {home} and {username} are replaced.""",
    )
    work_directory = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The user's work directory that goes into the job and comes back when it
        ends or is evicted. Default: the site file's notebook.work_directory. '~' is the
        user's home; {username} is replaced. A named server gets '<directory>-<name>'.""",
    )
    job_python = Unicode(
        sys.executable,
        config=True,
        help="""The Python that has condorspawner and jupyterhub installed, on the
        execute points (the job runs `-m condorspawner.launcher`) and on the hub (file
        operations as the user). Every user must be able to run it: not under /root.""",
    )
    launcher_args = List(
        Unicode(),
        config=True,
        help="""More arguments for condorspawner-singleuser in the job, e.g.
        ["--server", "/opt/bin/my-server"] or ["--wait-for-hub", "120"].""",
    )
    queue_poll_interval = Float(
        10.0, config=True, help="Seconds between the shared watcher's condor_q calls."
    )
    queue_poll_interval_pending = Float(
        1.0, config=True, help="Seconds between condor_q calls while some spawn is waiting."
    )
    tunnel_max_restarts = Integer(
        5, config=True, help="Failed tunnel restarts in a row before the server is ended."
    )
    stop_timeout = Float(
        60.0,
        config=True,
        help="""Seconds stop() waits for the work directory to come back. A job whose
        files are not back by then is kept held (never removed) and the stop fails.""",
    )
    unknown_timeout = Float(
        600.0,
        config=True,
        help="""Seconds a job may be in neither the queue nor the history (nor ended in
        its own event log) before its server is reported gone.""",
    )
    min_uid = Integer(
        1000, config=True, help="Users whose account has a lower uid get no notebook job."
    )
    denied_users = List(
        Unicode(),
        default_value=list(DEFAULT_DENIED),
        config=True,
        help="Accounts that never get a notebook job (root is always refused).",
    )
    profile_list = Union(
        [List(), Callable()],
        default_value=[],
        config=True,
        help="""Presets offered in the form, like kubespawner's. Each is a dict:
        {"display_name": "...", "slug": "small", "default": True,
         "user_options": {"cpus": 2, "memory": "4GB"},
         "allowed_containers": ["Rocky9"]}.
        The user's own values override a profile's user_options; allowed_containers
        restricts the OS choice. May be a callable (spawner) -> list.""",
    )

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        # our own idle limit (site file) ends a queued spawn first, with its reason
        return int(cached_site(self.site_file).notebook.start_timeout) + 120

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120

    def _profiles(self) -> list[dict[str, Any]]:
        profiles = self.profile_list
        return list(profiles(self) if callable(profiles) else profiles)

    @default("options_form")
    def _default_options_form(self) -> Any:
        async def render(spawner: Any) -> str:
            slots = PoolStatus.shared(Condor(spawner.site.pool), spawner.queue_poll_interval)
            return await spawner.options.render(spawner.user_options, slots)

        return render  # called as options_form(spawner)

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return lambda spawner, user_options: spawner.options.validate(user_options)

    @property
    def options(self) -> OptionsForm:
        if self._options is None:
            self._options = OptionsForm(
                self.site,
                self.user.name if self.user else "",
                self.log,
                profiles=self._profiles,
                check_account=self._account,
            )
        return self._options

    def job_request(self, options: dict[str, Any] | None = None) -> JobRequest:
        """The user's options (through the chosen profile) checked against the site."""
        return self.options.request(self.user_options if options is None else options)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return form.options_from_form(formdata)

    def run_options_from_form(self, form_data: dict[str, list[str]]) -> dict[str, Any]:
        """The form's options, checked now: a mistake shows the form again, nothing starts."""
        return self.options.checked_form(super().run_options_from_form(form_data))

    def options_from_query(self, query_data: dict[str, list[str]]) -> dict[str, Any]:
        """``/hub/spawn?cpus=2``: checked like the form."""
        return self.options.checked_form(super().options_from_query(query_data))
