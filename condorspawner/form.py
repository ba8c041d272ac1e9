"""The spawn options form and profiles (named presets), from the site's limits and catalogue.

The form answers a new user's questions on the page itself: what each
container OS is (the catalogue's description), what each limit means and its
range, and what the pool can give right now for the size asked (free slots,
from :mod:`condorspawner.pool_status`; a small script updates that line as
the fields change). Values a user entered come back after an error.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from condorspawner import job_options
from condorspawner.pool_status import FreeSlot, describe_room, room
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Site
from condorspawner.units import format_duration_s, format_size_mb

_e = html.escape


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


_FORMATS = {job_options.SIZE: format_size_mb, job_options.DURATION: format_duration_s}


def _shown(name: str, raw: Any) -> str:
    """A kept value (typed text, or a REST API number/table) as the field shows it."""
    kind = job_options.option(name).kind
    if isinstance(raw, bool) or raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int):
        return _FORMATS.get(kind, str)(raw)
    if kind == job_options.ENVIRONMENT and isinstance(raw, Mapping):
        return "\n".join(f"{k}={v}" for k, v in raw.items())
    if kind == job_options.ENVIRONMENT and isinstance(raw, list | tuple):
        return "\n".join(str(v) for v in raw)
    return ""


def _size(site: Site, options: Mapping[str, Any]) -> tuple[int, int, int]:
    """CPUs, memory and GPUs the form asks for now (a field that does not parse: default)."""
    got = {}
    for name, attr in (("cpus", "cpus"), ("memory", "memory_mb"), ("gpus", "gpus")):
        try:
            got[name] = getattr(JobRequest.build(site, **{name: options.get(name)}), attr)
        except RequestError:
            got[name] = getattr(JobRequest.build(site), attr)
    return got["cpus"], got["memory"], got["gpus"]


class _Fields:
    """HTML of one field at a time: label, input with the kept value, help underneath."""

    def __init__(
        self, site: Site, values: Mapping[str, Any], error_field: str | None, blank_defaults: bool
    ) -> None:
        self.site, self.values, self.error_field = site, values, error_field or ""
        self.blank_defaults = blank_defaults

    def invalid(self, name: str) -> bool:
        return self.error_field == name or self.error_field.startswith(f"{name}.")

    def value(self, name: str) -> str:
        if name in self.values:
            return _shown(name, self.values[name])
        if self.blank_defaults or not job_options.option(name).limited:
            return ""
        limit = self.site.limits[name]
        return limit.describe(limit.default)

    def wrap(self, name: str, label: str, control: str, help_text: str) -> str:
        return (
            f'<div class="form-group mb-3"><label class="form-label" for="cs-{name}">'
            f"{_e(label)}</label>{control}"
            f'<div class="form-text" id="cs-{name}-help">{_e(help_text)}</div></div>'
        )

    def attrs(self, name: str, css: str = "form-control") -> str:
        bad = ' is-invalid" aria-invalid="true' if self.invalid(name) else ""
        return f'class="{css}{bad}" id="cs-{name}" name="{name}" aria-describedby="cs-{name}-help"'

    def limit(self, name: str, label: str) -> str:
        limit = self.site.limits[name]
        kind = (
            f'type="number" min="{limit.min}" max="{limit.max}"'
            if limit.unit == ""
            else 'type="text" autocomplete="off"'
        )
        placeholder = (
            f' placeholder="{_e(limit.describe(limit.default))}"' if self.blank_defaults else ""
        )
        control = f'<input {self.attrs(name)} {kind}{placeholder} value="{_e(self.value(name))}">'
        grace = format_duration_s(self.site.notebook.grace_period)
        help_text = (
            f"{job_options.option(name).help.format(grace=grace)} "
            f"Allowed: {_limit_hint(self.site, name)}; "
            f"default {limit.describe(limit.default)}"
            + ("; empty: the profile's value." if self.blank_defaults else ".")
        )
        return self.wrap(name, f"{label} ({_limit_hint(self.site, name)})", control, help_text)


def _os_choices(
    site: Site,
    fields: _Fields,
    chosen: str,
    size: tuple[int, int, int],
    slots: Sequence[FreeSlot] | None,
) -> str:
    options = "".join(
        f'<option value="{_e(c.name)}"{" selected" if c.name.lower() == chosen else ""}>'
        f"{_e(c.label)}</option>"
        for c in site.catalogue.entries
    )
    control = f"<select {fields.attrs('container', 'form-select')}>{options}</select>"
    items = []
    for c in site.catalogue.entries:
        free = ""
        if slots is not None:
            free = (
                f' <span class="cs-room" data-os="{_e(c.name.lower())}">'
                f"{_e(describe_room(room(slots, c.name, *size), *size))}</span>"
            )
        items.append(
            f'<li data-os="{_e(c.name)}"><strong>{_e(c.label)}</strong>'
            f"{': ' + _e(c.description) if c.description else ''}{free}</li>"
        )
    listing = f'<ul class="cs-os-list small mt-2 mb-0">{"".join(items)}</ul>'
    os_option = job_options.option("container")
    return fields.wrap("container", os_option.label, control + listing, os_option.help)


# Recomputes the "free slots" lines from the embedded pool answer as the size changes.
_SCRIPT = """<script>
(function () {
  var box = document.getElementById("cs-pool");
  if (!box) return;
  var slots = JSON.parse(box.getAttribute("data-slots"));
  var units = {k: 1 / 1024, m: 1, g: 1024, t: 1048576};
  function num(id, dflt) {
    var el = document.getElementById(id);
    if (!el || el.value.trim() === "") return dflt;
    return /^[0-9]+$/.test(el.value.trim()) ? parseInt(el.value, 10) : null;
  }
  function mem(dflt) {
    var el = document.getElementById("cs-memory");
    if (!el || el.value.trim() === "") return dflt;
    var m = /^\\s*([0-9]+(?:\\.[0-9]+)?)\\s*(?:([kmgt])(?:i?b)?)?\\s*$/i.exec(el.value);
    return m ? Math.ceil(parseFloat(m[1]) * (m[2] ? units[m[2].toLowerCase()] : 1)) : null;
  }
  function size(mb) {
    if (mb % 1048576 === 0) return mb / 1048576 + "TB";
    return mb % 1024 === 0 ? mb / 1024 + "GB" : mb + "MB";
  }
  function update() {
    var d = JSON.parse(box.getAttribute("data-default"));
    var cpus = num("cs-cpus", d[0]), mb = mem(d[1]), gpus = num("cs-gpus", d[2]);
    document.querySelectorAll(".cs-room").forEach(function (line) {
      if (cpus === null || mb === null || gpus === null) return;
      var n = 0;
      slots.forEach(function (s) {
        if (s.oses === null || s.oses.indexOf(line.getAttribute("data-os")) < 0) return;
        var fit = Math.min(Math.floor(s.cpus / Math.max(cpus, 1)),
                           Math.floor(s.memory / Math.max(mb, 1)));
        if (gpus > 0) fit = Math.min(fit, Math.floor(s.gpus / gpus));
        n += s.partitionable ? fit : Math.min(fit, 1);
      });
      var what = cpus + " CPU" + (cpus === 1 ? "" : "s") + ", " + size(mb) +
        (gpus ? ", " + gpus + " GPU" + (gpus === 1 ? "" : "s") : "");
      line.textContent = n > 0
        ? n + " free slot" + (n === 1 ? "" : "s") + " now (" + what +
          " each): your server can start at once"
        : "none free now: your server will queue until a slot is free";
    });
  }
  ["cs-cpus", "cs-memory", "cs-gpus"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) el.addEventListener("input", update);
  });
})();
</script>"""


def _pool_data(slots: Sequence[FreeSlot], default_size: tuple[int, int, int]) -> str:
    data = [
        {
            "cpus": s.cpus,
            "memory": s.memory_mb,
            "gpus": s.gpus,
            "oses": list(s.oses) if s.oses is not None else None,
            "partitionable": s.partitionable,
        }
        for s in slots
    ]
    return (
        f'<div id="cs-pool" hidden data-slots="{_e(json.dumps(data))}" '
        f'data-default="{_e(json.dumps(list(default_size)))}"></div>{_SCRIPT}'
    )


def render_form(
    site: Site,
    profiles: Sequence[Mapping[str, Any]] = (),
    *,
    values: Mapping[str, Any] | None = None,
    error_field: str | None = None,
    slots: Sequence[FreeSlot] | None = None,
) -> str:
    """HTML for JupyterHub's spawn page.

    ``values``: what the user entered last (kept after an error); ``error_field``:
    the field to mark; ``slots``: the pool's free slots (None: unknown, nothing shown).
    """
    values = dict(values or {})
    lim = site.limits
    fields = _Fields(site, values, error_field, blank_defaults=bool(profiles))
    rows = []
    profile: Mapping[str, Any] = {}
    if profiles:
        try:
            profile = find_profile(profiles, values.get("profile") or None)
        except RequestError:
            profile = find_profile(profiles, None)
        options = "".join(
            f'<option value="{_e(str(p.get("slug")))}"'
            f"{' selected' if p is profile else ''}>"
            f"{_e(str(p.get('display_name', p.get('slug'))))}</option>"
            for p in profiles
        )
        rows.append(
            fields.wrap(
                "profile",
                "Profile",
                f"<select {fields.attrs('profile', 'form-select')}>{options}</select>",
                "A preset size; the fields below override it.",
            )
        )
    asked = {k: v for k, v in values.items() if k != "profile"}
    with contextlib.suppress(RequestError):  # the error message says why; show what was typed
        asked = apply_profile(profile, asked)
    chosen = str(asked.get("container") or site.catalogue.default.name).lower()
    size = _size(site, asked)

    def row(o: job_options.JobOption) -> str | None:
        if o.limited:  # shown when it can be more than zero; folded ones when there is a choice
            limit = lim[o.name]
            offered = limit.max > 0 and (o.form == "main" or limit.max > limit.min)
            return fields.limit(o.name, o.label) if offered else None
        if o.kind == job_options.CONTAINER:
            return _os_choices(site, fields, chosen, size, slots)
        control = (
            f'<textarea {fields.attrs(o.name)} rows="3" spellcheck="false" '
            f'placeholder="OMP_NUM_THREADS=2">{_e(fields.value(o.name))}</textarea>'
        )
        return fields.wrap(o.name, o.label, control, o.help)

    rows += [r for r in map(row, job_options.on_form("main")) if r is not None]
    folded = [(o, r) for o in job_options.on_form("more") if (r := row(o)) is not None]
    opened = any(values.get(o.name) not in (None, "") or fields.invalid(o.name) for o, _ in folded)
    rows.append(
        f'<details class="mb-3"{" open" if opened else ""}>'
        f"<summary>More options ({', '.join(o.label.lower() for o, _ in folded)})"
        f"</summary>{''.join(r for _, r in folded)}</details>"
    )
    if slots is not None:
        rows.append(_pool_data(slots, _size(site, profile.get("user_options", {}))))
    return "\n".join(rows)


def options_from_form(formdata: Mapping[str, Any]) -> dict[str, Any]:
    """Form fields (lists of strings) to user_options: first value of each known field."""
    options: dict[str, Any] = {}
    for name in (*(o.name for o in job_options.OPTIONS if o.form), "profile"):
        value = formdata.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        lines = name != "profile" and job_options.option(name).kind == job_options.ENVIRONMENT
        if isinstance(value, str) and lines:
            value = value.strip()
        if value not in (None, ""):
            options[name] = value
    return options
