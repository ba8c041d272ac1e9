"""Which container operating systems a site offers, and which one a job gets.

Users pick an OS by name ("Rocky9"); the catalogue knows its label and a
one-line description for forms, the image that implements it, and which entry
is the default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}\Z")
MODES = ("site", "image")
# What the form says about the OS names sites most often offer, when the site
# file gives no description of its own.
KNOWN_DESCRIPTIONS = {
    "rocky9": "Enterprise Linux, binary compatible with RHEL 9: the usual choice for "
    "software built for clusters and grids.",
    "debian12": "Debian's stable release (bookworm), with newer compilers and libraries "
    "from Debian's archive.",
}


class CatalogueError(ValueError):
    """The catalogue itself is wrong, or a choice is not in it."""


@dataclass(frozen=True)
class ContainerOS:
    """One offered operating system."""

    name: str
    label: str
    image: str
    default: bool = False
    description: str = ""


@dataclass(frozen=True)
class Catalogue:
    """The site's container choices, in the order forms show them.

    ``mode`` says who turns the choice into an image: ``site`` (the job
    carries ``ContainerOS`` and the execute point picks the image) or
    ``image`` (the job names the image itself).
    """

    entries: tuple[ContainerOS, ...]
    mode: str = "site"
    extra_binds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CatalogueError(f"containers.mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if not self.entries:
            raise CatalogueError("containers.os: the catalogue is empty; list at least one OS")
        seen: set[str] = set()
        for entry in self.entries:
            if not NAME_RE.match(entry.name):
                raise CatalogueError(
                    f"containers.os: name {entry.name!r} must start with a letter and hold only "
                    "letters, digits, '.', '_' and '-' (at most 64)"
                )
            if entry.name.lower() in seen:
                raise CatalogueError(f"containers.os: {entry.name!r} is listed twice")
            seen.add(entry.name.lower())
            if not entry.image:
                raise CatalogueError(f"containers.os: {entry.name!r} has no image")
        defaults = [e.name for e in self.entries if e.default]
        if len(defaults) != 1:
            raise CatalogueError(
                "containers.os: exactly one entry must have default = true "
                f"(found {len(defaults)}: {', '.join(defaults) or 'none'})"
            )

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Catalogue:
        """Build from the ``[containers]`` table of the site file (keys already checked)."""
        entries = tuple(
            ContainerOS(
                name=e["name"],
                label=e.get("label", e["name"]),
                image=e["image"],
                default=bool(e.get("default", False)),
                description=e.get("description") or KNOWN_DESCRIPTIONS.get(e["name"].lower(), ""),
            )
            for e in section.get("os", [])
        )
        return cls(
            entries=entries,
            mode=section.get("mode", "site"),
            extra_binds=tuple(section.get("extra_binds", ())),
        )

    @property
    def default(self) -> ContainerOS:
        return next(e for e in self.entries if e.default)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def choose(self, name: str | None) -> ContainerOS:
        """The entry for a user's choice (case-insensitive), the default for none."""
        if name is None or name == "":
            return self.default
        if isinstance(name, str):
            for entry in self.entries:
                if entry.name.lower() == name.lower():
                    return entry
        raise CatalogueError(f"is not offered here; choose one of {', '.join(self.names)}")

    def with_images(self, images: Mapping[str, str]) -> Catalogue:
        """The same catalogue with some images replaced (after discovery)."""
        entries = tuple(replace(e, image=images.get(e.name, e.image)) for e in self.entries)
        return replace(self, entries=entries)

    def __iter__(self) -> Iterable[ContainerOS]:
        return iter(self.entries)
