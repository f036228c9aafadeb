"""lxpy-create's new config text: the rendered template config (comments kept), the extra
config merged in, the rootfs keys, the template name and MAC addresses drawn."""

from __future__ import annotations

import re
import tomllib

import pytest

from lxpy.lifecycle.create import _config_text

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


@pytest.mark.parametrize("rendered,extra", [
    (BUSYBOX, None),
    (BUSYBOX, {"net": [{"type": "veth", "link": "br0"}, {"type": "phys", "link": "eth9"}]}),
    (BUSYBOX, {"hostname": "other", "limits": {"memory": "512M"}}),
    (DEBIAN, None),
    (DEBIAN, {"net": [{"type": "empty"}]}),
    ("", None),
])
def test_config_text(rendered, extra):
    text = _config_text(rendered, extra, KEYS, "busybox")
    assert text.startswith(rendered.split("hostname")[0])        # the comments stay
    data = tomllib.loads(text)
    want = {**tomllib.loads(rendered), **(extra or {})}
    assert data["rootfs"] == {k.removeprefix("rootfs."): v for k, v in KEYS.items()}
    assert data["template"] == "busybox"
    for k, v in want.items():
        if k != "net":
            assert data[k] == v
    assert [e["type"] for e in data.get("net", [])] == [e["type"] for e in want.get("net", [])]
    for e in data.get("net", []):
        if e["type"] in ("veth", "macvlan"):
            assert MAC.match(e["hwaddr"])
