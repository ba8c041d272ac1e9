"""The spawn options form and profiles (named presets), from the site's limits and catalogue."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from condorspawner.request import RequestError
from condorspawner.site import Site

FORM_FIELDS = ("cpus", "memory", "gpus", "runtime", "container")


def find_profile(profiles: Sequence[Mapping[str, Any]], slug: str | None) -> Mapping[str, Any]:
    """The profile a user chose (by slug), the default one, or an empty profile."""
    if not profiles:
        if slug:
            raise RequestError("profile", slug, "is not offered (this hub has no profiles)")
        return {}
    if slug:
        for profile in profiles:
            if profile.get("slug") == slug:
                return profile
        names = ", ".join(str(p.get("slug")) for p in profiles)
        raise RequestError("profile", slug, f"is not offered; choose one of {names}")
    return next((p for p in profiles if p.get("default")), profiles[0])


def apply_profile(profile: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The user's options on top of the profile's; the profile's restrictions enforced."""
    merged = {**profile.get("user_options", {})}
    merged.update({k: v for k, v in options.items() if v not in (None, "") and k != "profile"})
    allowed = profile.get("allowed_containers")
    container = merged.get("container")
    if (
        allowed
        and container is not None
        and str(container).lower() not in {a.lower() for a in allowed}
    ):
        raise RequestError(
            "container",
            container,
            f"is not offered in profile {profile.get('slug')!r}; "
            f"choose one of {', '.join(allowed)}",
        )
    if allowed and container is None:
        merged["container"] = allowed[0]
    return merged


def _limit_hint(site: Site, name: str) -> str:
    limit = site.limits[name]
    return f"{limit.describe(limit.min)} to {limit.describe(limit.max)}"


def render_form(site: Site, profiles: Sequence[Mapping[str, Any]] = ()) -> str:
    """HTML for JupyterHub's spawn page: fields with the site's limits shown."""
    e = html.escape
    lim = site.limits
    rows = []
    if profiles:
        options = "".join(
            f'<option value="{e(str(p.get("slug")))}"{" selected" if p.get("default") else ""}>'
            f"{e(str(p.get('display_name', p.get('slug'))))}</option>"
            for p in profiles
        )
        rows.append(
            f'<label for="cs-profile">Profile</label>'
            f'<select class="form-control" id="cs-profile" name="profile">{options}'
            "</select>"
        )
    rows.append(
        f'<label for="cs-cpus">CPUs ({e(_limit_hint(site, "cpus"))})</label>'
        f'<input class="form-control" type="number" id="cs-cpus" name="cpus" '
        f'min="{lim["cpus"].min}" max="{lim["cpus"].max}" value="{lim["cpus"].default}">'
    )
    rows.append(
        f'<label for="cs-memory">Memory ({e(_limit_hint(site, "memory"))})</label>'
        f'<input class="form-control" type="text" id="cs-memory" name="memory" '
        f'value="{e(lim["memory"].describe(lim["memory"].default))}">'
    )
    if lim["gpus"].max > 0:
        rows.append(
            f'<label for="cs-gpus">GPUs ({e(_limit_hint(site, "gpus"))})</label>'
            f'<input class="form-control" type="number" id="cs-gpus" name="gpus" '
            f'min="{lim["gpus"].min}" max="{lim["gpus"].max}" value="{lim["gpus"].default}">'
        )
    rows.append(
        f'<label for="cs-runtime">Runtime ({e(_limit_hint(site, "runtime"))})</label>'
        f'<input class="form-control" type="text" id="cs-runtime" name="runtime" '
        f'value="{e(lim["runtime"].describe(lim["runtime"].default))}">'
    )
    choices = "".join(
        f'<option value="{e(c.name)}"{" selected" if c.default else ""}>{e(c.label)}</option>'
        for c in site.catalogue.entries
    )
    rows.append(
        f'<label for="cs-container">Container OS</label>'
        f'<select class="form-control" id="cs-container" name="container">{choices}'
        "</select>"
    )
    return "\n".join(f'<div class="form-group">{row}</div>' for row in rows)


def options_from_form(formdata: Mapping[str, Any]) -> dict[str, Any]:
    """Form fields (lists of strings) to user_options: first value of each known field."""
    options: dict[str, Any] = {}
    for name in (*FORM_FIELDS, "profile"):
        value = formdata.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if value not in (None, ""):
            options[name] = value
    return options
