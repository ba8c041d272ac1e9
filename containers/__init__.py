"""The container-OS catalogue and what execute points need to honour it."""

from containers.catalogue import Catalogue, CatalogueError, ContainerOS

__all__ = ["Catalogue", "CatalogueError", "ContainerOS"]
