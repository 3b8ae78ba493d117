"""The throwaway RabbitMQ node of the tests leaves no process behind, epmd included."""

from __future__ import annotations

import shutil
import socket

import pytest

from sts_rabbitmq import testing
from sts_rabbitmq.testing import INSTALL_HINT, RabbitServer, find_rabbitmq_server


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_cleanup_stops_the_nodes_epmd(rabbitmq_server_factory):
    server = rabbitmq_server_factory()
    port = server._epmd_port
    assert listening(port)
    server.cleanup()
    assert not listening(port)


def test_a_node_whose_epmd_does_not_listen_is_not_started_and_starts_no_epmd_of_its_own(monkeypatch):
    if find_rabbitmq_server() is None:
        pytest.fail(INSTALL_HINT)
    # An "epmd" that exits at once: erl would start `epmd -daemon` itself, which outlives the tests.
    monkeypatch.setattr(testing, "_find_epmd", lambda: shutil.which("true"))
    server = RabbitServer()
    try:
        with pytest.raises(RuntimeError, match=r"epmd did not listen on 127\.0\.0\.1"):
            server.start()
        assert not server.running
    finally:
        server.cleanup()
    assert not listening(server._epmd_port)
