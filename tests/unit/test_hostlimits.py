"""hostlimits: what a degraded guest's journal lines are blamed on, and the table's need()."""

from __future__ import annotations

import pytest

from lxpy import hostlimits


@pytest.mark.parametrize("unit,line,key", [
    ("systemd-logind.service", "Failed to create inotify object: Too many open files",
     "fs.inotify.max_user_instances"),
    ("lxpyprobe.path", "lxpyprobe.path: Failed to enter waiting state: Too many open files",
     "fs.inotify.max_user_instances"),
    ("foo.service", "Failed to add inotify watch on /etc: No space left on device",
     "fs.inotify.max_user_watches"),
    ("bar.service", "Failed to set up keyring: Disk quota exceeded", "kernel.keys.maxkeys"),
])
def test_a_failed_units_line_names_the_host_limit(unit, line, key):
    g = hostlimits.parse_probe(f"state degraded\nfailed {unit}\nlog {unit} {line}\n")
    assert g["state"] == "degraded" and g["failed"] == [unit]
    assert g["host_limit"]["key"] == key and g["host_limit"]["message"] == line
    assert g["host_limit"]["value"] == hostlimits.read(key)


def test_other_failures_blame_no_limit():
    # a service's own "Too many open files" is its nofile limit, not inotify's
    g = hostlimits.parse_probe("state degraded\nfailed networking.service\nfailed web.service\n"
                               "log web.service accept: Too many open files\n")
    assert g["failed"] == ["networking.service", "web.service"] and g["host_limit"] is None
    assert hostlimits.parse_probe("state running\n") == {"state": "running", "failed": [],
                                                         "host_limit": None}
    assert hostlimits.parse_probe("")["state"] is None


def test_need_grows_with_the_containers_only_where_they_draw_on_it():
    ino = hostlimits.BY_KEY["fs.inotify.max_user_instances"]
    assert ino.need(0) < 128 < ino.need(20)     # the kernel's default: 20 guests degraded
    assert ino.need(50) <= ino.value
    assert all(lim.need(1000) == 0 for lim in hostlimits.LIMITS if not lim.per_container)
