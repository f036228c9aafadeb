"""sd_notify: messages arrive on a datagram socket made by the test, path or abstract."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from lxpy import sdnotify


@pytest.fixture
def path_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


def test_ready_and_status_arrive_in_one_datagram(path_socket):
    assert sdnotify.notify(ready=True, status="web1 running (init pid 42)")
    msg = path_socket.recv(4096).decode()
    assert msg.splitlines() == ["READY=1", "STATUS=web1 running (init pid 42)"]


def test_stopping_with_timeout_extension(path_socket):
    assert sdnotify.notify(stopping=True, status="stopping", extend_timeout=90)
    lines = path_socket.recv(4096).decode().splitlines()
    assert "STOPPING=1" in lines and "EXTEND_TIMEOUT_USEC=90000000" in lines


def test_status_stays_one_line(path_socket):
    sdnotify.notify(status="line one\nREADY=1")
    assert path_socket.recv(4096).decode() == "STATUS=line one READY=1"


def test_mainpid(path_socket):
    sdnotify.notify(mainpid=os.getpid())
    assert path_socket.recv(4096).decode() == f"MAINPID={os.getpid()}"


def test_abstract_socket(monkeypatch):
    name = f"lxpy-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.under_systemd()
        assert sdnotify.notify(ready=True)
        assert s.recv(4096) == b"READY=1"


def test_nothing_sent_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.under_systemd()
    assert sdnotify.notify(ready=True, status="x") is False


@pytest.mark.parametrize("value", ["", "relative/path", "vsock:2:1234"])
def test_unusable_socket_values_send_nothing(monkeypatch, value):
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert sdnotify.notify(ready=True) is False


def test_gone_socket_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nothing-here"))
    assert sdnotify.notify(ready=True) is False


def test_clean_environ_drops_the_units_variables():
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "INVOCATION_ID": "x", "JOURNAL_STREAM": "1:2",
           "PATH": "/usr/bin", "TERM": "linux"}
    assert sdnotify.clean_environ(env) == {"PATH": "/usr/bin", "TERM": "linux"}
