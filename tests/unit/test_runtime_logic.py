"""Runtime logic that needs no root: the wire format, the state file and what query()
concludes from it, lxpy-wait's state list, the start plan's environment."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lxpy.errors import UsageError
from lxpy.runtime import proto, state
from lxpy.runtime.wait import parse_states


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=50),
       st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                       st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                               max_size=40), max_size=5))
def test_proto_roundtrip(value, fields):
    kind, got = proto.decode(proto.encode("error", message=value, **fields))
    assert kind == "error"
    assert got["message"] == value
    for k, v in fields.items():
        if k != "message":
            assert got[k] == v


def test_stream_framing_splits_messages_and_keeps_the_rest():
    r = proto.Reader()
    data = proto.frame("state", state="RUNNING") + proto.frame("ok") + b"raw bytes"
    assert r.feed(data[:5]) == []
    msgs = r.feed(data[5:])
    assert msgs == [("state", {"state": "RUNNING"}), ("ok", {})]
    assert r.buf == b"raw bytes"


def test_state_query_no_run_dir(tmp_path):
    info = state.query_dir(tmp_path / "nope")
    assert info.state == "STOPPED" and not info.stale and info.pid is None


def test_state_query_live_monitor(tmp_path):
    me = os.getpid()
    state.write_file(tmp_path, {"state": "RUNNING", "monitor_pid": me,
                                "monitor_start": state.start_time(me), "pid": me,
                                "pid_start": state.start_time(me), "cgroup": "lxpy/x"})
    info = state.query_dir(tmp_path)
    assert (info.state, info.pid, info.cgroup, info.monitor_alive) == ("RUNNING", me,
                                                                        "lxpy/x", True)


def test_state_query_monitor_gone_init_alive(tmp_path):
    me = os.getpid()
    state.write_file(tmp_path, {"state": "RUNNING", "monitor_pid": me,
                                "monitor_start": 1, "pid": me,   # start time mismatch: gone
                                "pid_start": state.start_time(me)})
    info = state.query_dir(tmp_path)
    assert info.state == "RUNNING" and not info.monitor_alive and not info.stale


def test_state_query_everything_gone_is_stale(tmp_path):
    state.write_file(tmp_path, {"state": "RUNNING", "monitor_pid": 2 ** 22 + 7,
                                "pid": 2 ** 22 + 9, "pid_start": 5})
    info = state.query_dir(tmp_path)
    assert info.state == "STOPPED" and info.stale and info.pid is None


def test_state_file_is_replaced_atomically(tmp_path):
    state.write_file(tmp_path, {"state": "STARTING"})
    state.write_file(tmp_path, {"state": "RUNNING"})
    assert sorted(os.listdir(tmp_path)) == ["state"]
    assert state.read_file(tmp_path) == {"state": "RUNNING"}


def test_parse_states():
    assert parse_states("running|STOPPED") == {"RUNNING", "STOPPED"}
    with pytest.raises(UsageError):
        parse_states("RUNNING|SLEEPING")
    with pytest.raises(UsageError):
        parse_states("|")


def test_monitor_and_state_stay_lean():
    """The monitor (one per running container) and state.query (lxpy-ls) import no heavy
    modules: memory per container and listing speed depend on it."""
    from tests.conftest import loaded_by
    assert loaded_by("import lxpy.runtime.state, lxpy.runtime.monitor",
                     ["dataclasses", "pathlib", "enum", "ctypes", "json", "socket", "signal",
                      "lxpy.config", "lxpy.cgroups"]) == []


def test_monitor_adopts_the_helper_lxpy_start_forked(tmp_path):
    """start._prefork hands over "sock,pid,go,notify,master:slave:path,..." as the monitor's 5th
    argument; without it the monitor forks the helper itself (reboots)."""
    import marshal

    from lxpy.runtime.monitor import Monitor
    (tmp_path / "plan").write_bytes(marshal.dumps({"name": "x", "app": False}))
    m = Monitor(str(tmp_path), -1, -1, False, "5,123,1,11,7:8:/dev/pts/3,9:10:/dev/pts/4")
    assert m.pre == (5, 123) and m.pre_go and m.pre_notify == 11
    assert m.pre_ptys == [(7, 8, "/dev/pts/3"), (9, 10, "/dev/pts/4")]
    m = Monitor(str(tmp_path), -1, -1, False, "5,123,0,-1")
    assert m.pre == (5, 123) and not m.pre_go and m.pre_ptys == [] and m.pre_notify == -1
    m = Monitor(str(tmp_path), -1, -1, False)
    assert m.pre is None and not m.pre_go


def test_parse_states_ready():
    assert parse_states("ready") == {"READY"}
    assert parse_states("READY|STOPPED") == {"READY", "STOPPED"}


def test_notify_message_parsing():
    from lxpy.runtime import notify
    assert notify.parse(b"READY=1\nSTATUS=Startup finished in 400ms.\n") == {
        "READY": "1", "STATUS": "Startup finished in 400ms."}
    assert notify.parse(b"junk\n=x\nSTATUS=a\tb\nSTATUS=last") == {"STATUS": "last"}
    assert notify.parse(b"\xff\xfeSTATUS=\xff") == {"\ufffd\ufffdSTATUS": "\ufffd"}


def test_notify_listener_takes_only_init(tmp_path):
    """READY=1 counts only from the init that was given the socket (its pid, from the
    kernel's credentials); STOPPING=1 clears it; a new init starts over."""
    import socket

    from lxpy.runtime import notify
    listener = notify.Listener(str(tmp_path))
    try:
        assert listener.fields() == {"notify": "0", "ready": "0", "status": ""}
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1\nSTATUS=Ready.", listener.path)
            assert not listener.receive()          # no init was given the socket: ignored
            listener.pid = os.getpid()             # as started() finds it for the real init
            s.sendto(b"READY=1\nSTATUS=Ready.", listener.path)
            assert listener.receive()
            assert listener.fields() == {"notify": "1", "ready": "1", "status": "Ready."}
            assert not listener.receive()          # nothing queued
            s.sendto(b"STOPPING=1", listener.path)
            assert listener.receive() and not listener.ready
        listener.started(os.getpid() + 1 if os.getpid() < 2**22 else 2)  # another, gone
        assert listener.fields() == {"notify": "0", "ready": "0", "status": ""}
    finally:
        listener.close()


def test_notify_only_for_systemd(tmp_path, monkeypatch):
    from lxpy.runtime import notify
    (tmp_path / "lib/systemd").mkdir(parents=True)
    (tmp_path / "lib/systemd/systemd").write_text("")
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin/init").symlink_to("../lib/systemd/systemd")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/busybox").write_text("")
    (tmp_path / "bin/init").symlink_to("busybox")
    assert notify.wants_notify([str(tmp_path / "sbin/init")], {})
    assert notify.wants_notify(["init"], {"PATH": str(tmp_path / "sbin")})
    assert not notify.wants_notify([str(tmp_path / "bin/init")], {})
    # the admin's [environment] decides
    assert not notify.wants_notify([str(tmp_path / "sbin/init")], {"NOTIFY_SOCKET": ""})


def test_ready_counts_only_while_the_container_runs():
    from lxpy.runtime.wait import _reached
    assert _reached({"state": "RUNNING", "ready": "1"}, {"READY"})
    assert not _reached({"state": "RUNNING", "ready": "0"}, {"READY"})
    assert not _reached({"state": "STOPPED", "ready": "1"}, {"READY"})   # stale state file
    assert _reached({"state": "STOPPED", "ready": "1"}, {"READY", "STOPPED"})


def test_the_start_plan_is_data(tmp_path):
    """lxpy-start's plan is a frozen record that pickles (the monitor's helper reads it back
    for a reboot); PID 1's mounts are operations in order, each able to say what it does."""
    import dataclasses
    import marshal
    import pickle

    from lxpy.container import Container
    from lxpy.runtime import plan
    d = tmp_path / "c1"
    (d / "rootfs").mkdir(parents=True)
    (d / "config.toml").write_text('[[mount]]\nsource = "data"\ntarget = "/srv"\n'
                                   'options = ["bind", "optional"]\n')
    c = Container("c1", tmp_path)
    p = plan.build(c, c.config, idmap=None, cgroup=None, monitor_cgroup=None, app_cmd=None,
                   share_pids={}, logs=str(tmp_path / "log"), attach_context={})
    kinds = [type(op).__name__ for op in p.mounts]
    assert kinds[:4] == ["Private", "Rootfs", "RootfsDirs", "Mount"]
    assert kinds.index("PivotRoot") < kinds.index("Pty") < kinds.index("UserMount")
    user = next(op for op in p.mounts if type(op).__name__ == "UserMount")
    assert user.source == str(d / "data") and user.describe() == \
        f"bind {d / 'data'} on /srv (bind,optional)"
    assert pickle.loads(pickle.dumps(p)) == p
    assert marshal.loads(marshal.dumps(dataclasses.asdict(p)))["name"] == "c1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "c2"  # type: ignore[misc]
    lines = plan.describe(p)
    assert "  mount proc on /proc" in lines and "  pivot_root" in lines
    assert "init: /sbin/init (cwd /, uid 0, gid 0)" in lines


def test_an_unprivileged_plan_idmaps_rootfs_and_bind_mounts(tmp_path):
    """With an IdMap (lxpy.idmap.resolve's), the rootfs and the bind mounts are trees the
    namespace helper makes idmapped, except a bind mount with "noidmap"."""
    from lxpy.container import Container
    from lxpy.idmap import IdMap
    from lxpy.runtime import mounts, plan
    d = tmp_path / "c1"
    (d / "rootfs").mkdir(parents=True)
    (d / "config.toml").write_text(
        '[rootfs]\nbackend = "overlay"\nlower = "/cache"\n'
        '[[mount]]\nsource = "/a"\ntarget = "/a"\n'
        '[[mount]]\nsource = "/b"\ntarget = "/b"\noptions = ["bind", "noidmap"]\n'
        '[[mount]]\ntype = "tmpfs"\ntarget = "/t"\noptions = ["noidmap", "size=1M"]\n')
    c = Container("c1", tmp_path)
    idmap = IdMap(((0, 200000, 1000), (1000, 1000, 1), (1001, 201001, 64535)),
                  ((0, 300000, 65536),))
    p = plan.build(c, c.config, idmap=idmap, cgroup=None, monitor_cgroup=None, app_cmd=None,
                   share_pids={}, logs=str(tmp_path / "log"), attach_context={})
    assert p.idmap_uid == idmap.uid and p.idmap_gid == idmap.gid
    assert p.idmap_root == (200000, 300005)
    rootfs = next(op for op in p.mounts if isinstance(op, mounts.Rootfs))
    assert rootfs.idmapped and rootfs.backend == "overlay"
    assert rootfs.describe() == "mount rootfs (overlay backend), idmapped to the container's ids"
    user = [op for op in p.mounts if isinstance(op, mounts.UserMount)]
    assert [op.idmapped for op in user] == [True, False, False]
    assert user[0].describe().endswith("idmapped to the container's ids")
    from lxpy.linux import mount as m
    assert m.parse_options(["noidmap", "size=1M", "ro"]) == (m.MS_RDONLY, "size=1M")
    assert "id map: uid 0 200000 1000, 1000 1000 1, 1001 201001 64535; gid 0 300000 65536" \
        in plan.describe(p)
