"""The options form, profiles and the validation of a user's options (before any submission)."""

from __future__ import annotations

from typing import Any

from tornado import web

from condorspawner import form
from condorspawner.request import JobRequest, RequestError


class OptionsMixin:
    """What the user may ask for: the form, the profiles, a checked JobRequest."""

    def _profiles(self) -> list[dict[str, Any]]:
        profiles = self.profile_list
        return list(profiles(self) if callable(profiles) else profiles)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return form.options_from_form(formdata)

    @staticmethod
    def _validate_user_options(spawner: Any, user_options: dict[str, Any]) -> None:
        """Refuse bad options before anything is submitted (JupyterHub answers 400)."""
        try:
            spawner.job_request()
        except RequestError as err:
            raise web.HTTPError(400, f"Invalid server options: {err}") from None

    def job_request(self) -> JobRequest:
        """The user's options (through the chosen profile) checked against the site."""
        options = dict(self.user_options or {})
        profile = form.find_profile(self._profiles(), options.pop("profile", None))
        return JobRequest.from_options(self.site, form.apply_profile(profile, options))
