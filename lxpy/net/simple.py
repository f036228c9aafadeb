"""empty (a netns with only lo) and none (the host's netns, shared)."""

from __future__ import annotations

from .iface import IfaceType, register


@register
class Empty(IfaceType):
    name = "empty"


@register
class NoNet(IfaceType):
    name = "none"
    own_netns = False
