"""lxpy-create's new config text: the fast path (no tomlkit) gives what the tomlkit merge
gives, keeps the rendered text (comments) as it is, or declines."""

from __future__ import annotations

import re
import tomllib

import pytest

from lxpy.create import _config_fast, _config_tomlkit

BUSYBOX = ('# lxpy container c1, created from the busybox template\ninclude = ["busybox"]\n'
           'hostname = "c1"\narch = "amd64"\n')
DEBIAN = ('# lxpy container d, created from the debian template (bookworm/amd64)\n'
          'include = ["debian"]\nhostname = "d"\narch = "amd64"\n\n'
          '# One veth on the managed bridge\n# For a static address: ...\n[[net]]\n'
          'type = "veth"\nlink = "lxpybr0"\nname = "eth0"\nhwaddr = "00:16:3e:xx:xx:xx"\n'
          'dhcp = true\n')
KEYS = {"rootfs.backend": "overlay", "rootfs.path": "rootfs",
        "rootfs.lower": "/var/cache/lxpy/busybox/x/rootfs.1"}
MAC = re.compile(r"^00:16:3e(:[0-9a-f]{2}){3}$")


def _plain(text: str) -> dict:
    data = tomllib.loads(text)
    for e in data.get("net", []):
        if "hwaddr" in e:
            assert MAC.match(e["hwaddr"]) or "xx" not in e["hwaddr"], e["hwaddr"]
            e["hwaddr"] = "MAC"
    return data


@pytest.mark.parametrize("rendered,extra", [
    (BUSYBOX, None),
    (BUSYBOX, {"net": [{"type": "empty"}]}),
    (BUSYBOX, {"net": [{"type": "veth", "link": "br0"}, {"type": "phys", "link": "eth9"}]}),
    (BUSYBOX, {"autostart": True, "limits": {"memory": "512M"}, "groups": ["a", "b c"]}),
    (DEBIAN, None),
    (DEBIAN, {"autostart": 1}),
    ("", None),
])
def test_fast_config_is_the_tomlkit_one(rendered, extra):
    fast = _config_fast(rendered, extra, KEYS, "busybox")
    assert fast is not None
    assert fast.startswith(rendered.split("[[net]]")[0].split("\n\n# One")[0])
    assert _plain(fast) == _plain(_config_tomlkit(rendered, extra, KEYS, "busybox"))


@pytest.mark.parametrize("rendered,extra", [
    (BUSYBOX, {"hostname": "other"}),                     # a rendered key changed
    (DEBIAN, {"net": [{"type": "empty"}]}),               # rendered [[net]] replaced
    (BUSYBOX, {"limits": {"cpu": {"shares": 2}}}),        # a nested table
    (BUSYBOX, {"x": 1.5}),
    (BUSYBOX + "[rootfs]\nbackend = \"dir\"\n", None),    # rootfs changed
    ("x = [\n[1, 2],\n]\n", None),                        # a line starting with '[' in an array
])
def test_fast_config_declines_what_it_cannot_keep(rendered, extra):
    fast = _config_fast(rendered, extra, KEYS, "busybox")
    if fast is not None:        # it may still manage: then it must be right
        assert _plain(fast) == _plain(_config_tomlkit(rendered, extra, KEYS, "busybox"))
