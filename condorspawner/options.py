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
from collections.abc import Callable
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


class OptionsForm:
    """What one user may ask for: the form (with the last values posted and the field
    they got wrong), the profiles, a checked :class:`JobRequest`."""

    def __init__(
        self,
        site: Any,
        user: str,
        log: logging.Logger | logging.LoggerAdapter[Any],
        *,
        profiles: Callable[[], list[dict[str, Any]]],
        check_account: Callable[[], object],
    ) -> None:
        self.site, self.user, self.log = site, user, log
        self.profiles, self.check_account = profiles, check_account
        self.values: dict[str, Any] | None = None  # the last form posted (shown again)
        self.error_field: str | None = None  # the field it got wrong

    def request(self, options: dict[str, Any] | None) -> JobRequest:
        """The user's options (through the chosen profile) checked against the site."""
        options = dict(options or {})
        profile = form.find_profile(self.profiles(), options.pop("profile", None))
        return JobRequest.from_options(self.site, form.apply_profile(profile, options))

    def validate(self, options: dict[str, Any] | None) -> None:
        """Refuse bad options, and accounts that may have no notebook (root, system
        accounts, the deny list), before anything is written or submitted: JupyterHub
        answers 400 and logs one warning."""
        try:
            self.check_account()
            self.request(options)
        except (RequestError, AccountRefused) as err:
            raise self._invalid(err) from None

    def checked_form(self, options: dict[str, Any]) -> dict[str, Any]:
        """A posted form's options, checked now: a mistake shows the form again."""
        self.values, self.error_field = dict(options), None
        try:
            self.validate(options)
        except InvalidOptions as err:
            self.error_field = err.field
            raise
        return options

    def _invalid(self, err: RequestError | AccountRefused) -> InvalidOptions:
        quiet_invalid_options(self.log)
        return InvalidOptions(self.user, err)

    async def render(self, user_options: dict[str, Any] | None, slots_of: PoolStatus) -> str:
        """The form (JupyterHub's ``options_form``): last values, the pool's free slots."""
        slots = await slots_of.free_slots()
        values = self.values if self.values is not None else user_options
        error_field, self.error_field = self.error_field, None  # marked once, on the error page
        return form.render_form(
            self.site, self.profiles(), values=values, error_field=error_field, slots=slots
        )
