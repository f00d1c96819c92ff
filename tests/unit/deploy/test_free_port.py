"""The stack's port picks: below the kernel's ephemeral range, never the same twice within the
hold time (across processes: the record is a file), and never a port something listens on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tools.stack import process


@pytest.fixture(autouse=True)
def own_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "PORTS_FILE", tmp_path / "ports.json")


def test_picks_lie_below_the_ephemeral_range_and_never_repeat() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picks = [process.free_port() for _ in range(300)]
    assert len(set(picks)) == len(picks)
    assert all(port < low for port in picks)


def test_a_port_in_use_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two neighbours below the ephemeral range, the second free when chosen: beside a port
    # from bind(0), the next one was once an outgoing connection's on a loaded machine.
    with socket.socket() as listener:
        for busy in range(*process._port_range(), 2):
            try:
                listener.bind(("127.0.0.1", busy))
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", busy + 1))
                break
            except OSError:
                listener.close()
                listener = socket.socket()
        monkeypatch.setattr(process, "_port_range", lambda: (busy, busy + 1))
        assert process.free_port() == busy + 1


def test_the_record_forgets_after_the_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_port_range", lambda: (29999, 29999))
    first = process.free_port()
    with pytest.raises(process.ServerFailed):
        process.free_port()  # handed out a moment ago: held
    monkeypatch.setattr(process, "PORT_HOLD_S", 0.0)
    assert process.free_port() == first
