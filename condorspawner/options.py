"""The options form, profiles and the validation of a user's options (before any submission).

A user's mistake is not the hub's error: the form is checked when it is
posted (``run_options_from_form``), so JupyterHub renders the form again with
the message and the values the user typed, before any token, job or file
exists. The REST API's ``user_options`` are checked in ``apply_user_options``
and answered with 400 and the same message. Either way the hub log gets one
warning naming the user and the field: JupyterHub logs such errors several
times, some with a traceback, and :class:`QuietInvalidOptions` turns those
records into that one line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tornado import web

from condorspawner import form
from condorspawner.accounts import AccountRefused
from condorspawner.pool_status import PoolStatus
from condorspawner.request import JobRequest, RequestError


class InvalidOptions(web.HTTPError):
    """400 with the field's message as the page and the API show it (no ``HTTP 400:`` prefix);
    also for an account that may have no notebook at all (field ``account``)."""

    def __init__(self, user: str, err: RequestError | AccountRefused) -> None:
        message = str(err)
        super().__init__(400, "%s", message, reason="Invalid server options")
        self.user = user
        self.field = getattr(err, "field", "account")
        self.jupyterhub_message = message  # what JupyterHub's pages and API show
        self.logged_record: logging.LogRecord | None = None

    def __str__(self) -> str:
        return self.jupyterhub_message


class QuietInvalidOptions(logging.Filter):
    """One warning line per :class:`InvalidOptions`, whichever of JupyterHub's handlers logs it.

    The first record about it (one that carries it, or is logged while it is
    being handled and quotes its message) becomes ``Invalid server options
    from user U (field F): ...`` at warning level without a traceback; later
    records about the same error are dropped. Other records pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if not isinstance(exc, InvalidOptions) or record.levelno < logging.WARNING:
            return True
        if exc.logged_record is record:
            return True  # another handler of the same logger
        if not record.exc_info and str(exc) not in record.getMessage():
            return True  # something else logged while the error was being handled
        if exc.logged_record is not None:
            return False
        exc.logged_record = record
        record.msg = "Invalid server options from user %s (field %s): %s"
        record.args = (exc.user, exc.field, str(exc))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def quiet_invalid_options(log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Install :class:`QuietInvalidOptions` on the hub's logger and its handlers (once)."""
    logger = log.logger if isinstance(log, logging.LoggerAdapter) else log
    for target in (logger, *logger.handlers):
        if not any(isinstance(f, QuietInvalidOptions) for f in target.filters):
            target.addFilter(QuietInvalidOptions())


class OptionsMixin:
    """What the user may ask for: the form, the profiles, a checked JobRequest."""

    # the values of the last form posted (shown again), and the field it got wrong
    _form_values: dict[str, Any] | None = None
    _form_error: str | None = None

    def _profiles(self) -> list[dict[str, Any]]:
        profiles = self.profile_list
        return list(profiles(self) if callable(profiles) else profiles)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return form.options_from_form(formdata)

    def run_options_from_form(self, form_data: dict[str, list[str]]) -> dict[str, Any]:
        """The form's options, checked now: a mistake shows the form again, nothing starts."""
        return self._checked_form_options(super().run_options_from_form(form_data))

    def options_from_query(self, query_data: dict[str, list[str]]) -> dict[str, Any]:
        """``/hub/spawn?cpus=2``: checked like the form."""
        return self._checked_form_options(super().options_from_query(query_data))

    def _checked_form_options(self, options: dict[str, Any]) -> dict[str, Any]:
        self._form_values, self._form_error = dict(options), None
        try:
            self._account()
            self.job_request(options)
        except (RequestError, AccountRefused) as err:
            self._form_error = err.field
            raise self._invalid(err) from None
        return options

    def _invalid(self, err: RequestError | AccountRefused) -> InvalidOptions:
        quiet_invalid_options(self.log)
        return InvalidOptions(self.user.name, err)

    @staticmethod
    def _validate_user_options(spawner: Any, user_options: dict[str, Any]) -> None:
        """Refuse bad options, and accounts that may have no notebook (root, system
        accounts, the deny list), before anything is written or submitted: JupyterHub
        answers 400 and logs one warning."""
        try:
            spawner._account()
            spawner.job_request()
        except (RequestError, AccountRefused) as err:
            raise spawner._invalid(err) from None

    def job_request(self, options: dict[str, Any] | None = None) -> JobRequest:
        """The user's options (through the chosen profile) checked against the site."""
        options = dict((self.user_options if options is None else options) or {})
        profile = form.find_profile(self._profiles(), options.pop("profile", None))
        return JobRequest.from_options(self.site, form.apply_profile(profile, options))

    async def render_options_form(self) -> str:
        """The form (JupyterHub's ``options_form``): last values, the pool's free slots."""
        slots = await PoolStatus.shared(self.condor, self.queue_poll_interval).free_slots()
        values = self._form_values if self._form_values is not None else self.user_options
        error_field, self._form_error = self._form_error, None  # marked once, on the error page
        return form.render_form(
            self.site, self._profiles(), values=values, error_field=error_field, slots=slots
        )
