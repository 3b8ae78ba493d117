"""Test helpers for the RabbitMQ broker: a real, throwaway ``rabbitmq-server`` and pytest fixtures.

:class:`RabbitServer` runs one RabbitMQ node (Debian's ``rabbitmq-server`` package) on 127.0.0.1:
its own node name, AMQP and distribution ports, its own ``epmd`` on a free port, and a fresh
temporary directory for its data, logs and config. Nothing is read from or written to the system
node (``/var/lib/rabbitmq``, ``/etc/rabbitmq``), so tests run beside an installed service. The
node never starts an ``epmd -daemon`` of its own (one would outlive the tests): it starts only
once its ``epmd`` listens.

A node takes about 5 s to start on a 2-core machine, so the fixtures share one:

* ``rabbitmq_server`` -- one node for the whole test session;
* ``rabbitmq_url`` -- an ``amqp://`` URL on its own fresh virtual host, per test;
* ``rabbitmq_server_factory`` -- ``make()`` starts private nodes (for tests that kill or restart
  them), all stopped at the end of the test.

``delete_topology(server, prefix)`` removes the queues and exchanges a broker declared under a
name prefix. This module imports the standard library, pytest, pika and the plugin's own names.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import pika
import pika.exceptions
import pytest

from sts_core.testing.processes import die_with_parent_preexec, stable_free_port
from sts_rabbitmq.topology import LEVELS, Names

__all__ = [
    "INSTALL_HINT",
    "RabbitServer",
    "delete_topology",
    "find_rabbitmq_server",
    "purge_topology",
    "rabbitmq_server",
    "rabbitmq_server_factory",
    "rabbitmq_url",
]

#: The message used when ``rabbitmq-server`` cannot be found.
INSTALL_HINT = "rabbitmq-server is not installed; scripts/test.sh installs it (apt-get install rabbitmq-server)"

_HOST = "127.0.0.1"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0
_LOG_TAIL_LINES = 30
# The node's own start script: /usr/sbin/rabbitmq-server switches to the rabbitmq user and its
# home, which would share the system node's cookie and data.
_SERVER_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)
_CONFIG = """\
listeners.tcp.default = {port}
loopback_users = none
disk_free_limit.absolute = 10MB
log.console = false
log.file.level = info
"""


def find_rabbitmq_server() -> str | None:
    """The node's start script (``/usr/lib/rabbitmq/bin/rabbitmq-server``), or None."""
    for candidate in _SERVER_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("rabbitmq-server")
    if found:  # a non-Debian layout: the script next to the node's own tools
        return found
    return None


def _find_epmd() -> str | None:
    return shutil.which("epmd") or next(
        (str(path) for path in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")) if os.access(path, os.X_OK)),
        None,
    )


class RabbitServer:
    """A real RabbitMQ node on 127.0.0.1 with its own ports, node name and temporary directory.

    Nothing runs until :meth:`start`. Ports are chosen on the first start and kept, so
    :meth:`restart`, or :meth:`kill` followed by :meth:`start`, brings the node back at the same
    URL with the same data (durable queues and their messages survive). :meth:`cleanup` stops
    the node and its ``epmd`` and removes the directory; it also runs at interpreter exit.
    """

    def __init__(self, *, tls: tuple[str, str, str] | None = None) -> None:
        """``tls``: ``(ca_file, cert_file, key_file)`` to listen for ``amqps://`` on another port
        too (see :attr:`tls_port`)."""
        self._tls = tls
        self._tls_port: int | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="sts-rabbitmq-"))
        self._node = f"sts-test-{secrets.token_hex(4)}@localhost"
        self._port: int | None = None
        self._dist_port: int | None = None
        self._epmd_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._cleaned = False
        atexit.register(self.cleanup)

    # -- where ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The AMQP port (chosen on the first start)."""
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def tls_port(self) -> int:
        """The ``amqps://`` port of a node started with ``tls``."""
        if self._tls_port is None:
            raise RuntimeError("the server was not started with tls")
        return self._tls_port

    @property
    def dir(self) -> Path:
        """The temporary directory holding the node's data, logs and config."""
        return self._dir

    @property
    def pid(self) -> int | None:
        """The node's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def url(self, vhost: str = "/") -> str:
        """``amqp://guest:guest@127.0.0.1:<port>/<vhost>``."""
        return f"amqp://guest:guest@{_HOST}:{self.port}/{quote(vhost, safe='')}"

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the node and return once it accepts AMQP connections."""
        if self.running:
            return self
        server = find_rabbitmq_server()
        epmd = _find_epmd()
        if server is None or epmd is None:
            raise RuntimeError(INSTALL_HINT)
        if self._port is None:
            # Below the ephemeral range: clients reconnecting while the node is down must not be
            # given its ports as their own.
            ports: list[int] = []
            while len(ports) < 4:
                port = stable_free_port(_HOST)
                if port not in ports:
                    ports.append(port)
            self._port, self._dist_port, self._epmd_port, tls_port = ports
            if self._tls is not None:
                self._tls_port = tls_port
        self._write_files()
        env = self._env()
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen(
                [epmd, "-port", str(self._epmd_port), "-address", _HOST],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent_preexec(),
            )
            self._wait_for_epmd()
        with (self._dir / "node.out").open("ab") as out:
            self._process = subprocess.Popen(
                [server], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self._dir,
                start_new_session=True,  # kill() takes the whole node (beam and its helpers)
            )
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Stop the node gracefully (SIGTERM), killing it after a timeout."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group(process.pid)

    def kill(self) -> None:
        """SIGKILL the node at once, as a crash would (durable data stays)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(_STOP_TIMEOUT)
        self._reap_group(process.pid)

    def restart(self) -> Self:
        """Stop gracefully and start again on the same port with the same data."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop the node and epmd and remove the directory (idempotent)."""
        if self._cleaned:
            return
        self._cleaned = True
        self.kill()
        if self._epmd is not None and self._epmd.poll() is None:
            self._epmd.kill()
            self._epmd.wait(_STOP_TIMEOUT)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"<RabbitServer {self._node} {where} {'running' if self.running else 'stopped'}>"

    # -- using it -----------------------------------------------------------------------------------

    def connection(self, vhost: str = "/") -> pika.BlockingConnection:
        """A new blocking connection (for test set-up and inspection)."""
        return pika.BlockingConnection(pika.URLParameters(self.url(vhost) + "?connection_attempts=1"))

    def add_vhost(self, name: str) -> str:
        """Create a virtual host for guest (through ``rabbitmqctl``) and return its URL."""
        self._ctl("add_vhost", name)
        self._ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return self.url(name)

    def delete_vhost(self, name: str) -> None:
        self._ctl("delete_vhost", name)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the node's log files, for failure messages."""
        texts = []
        for path in [*sorted((self._dir / "log").glob("*.log")), self._dir / "node.out"]:
            with contextlib.suppress(OSError):
                texts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    # -- internals ----------------------------------------------------------------------------------

    def _write_files(self) -> None:
        home = self._dir / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
        config = _CONFIG.format(port=self._port)
        if self._tls is not None:
            ca_file, cert_file, key_file = self._tls
            config += (f"listeners.ssl.default = {self._tls_port}\nssl_options.cacertfile = {ca_file}\n"
                       f"ssl_options.certfile = {cert_file}\nssl_options.keyfile = {key_file}\n"
                       "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n")
        (self._dir / "rabbitmq.conf").write_text(config)
        (self._dir / "advanced.config").write_text("[].\n")
        (self._dir / "enabled_plugins").write_text("[].\n")
        (self._dir / "rabbitmq-env.conf").write_text("")

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self._dir / "home"),
            "RABBITMQ_NODENAME": self._node,
            "RABBITMQ_NODE_IP_ADDRESS": _HOST,
            "RABBITMQ_NODE_PORT": str(self._port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "ERL_EPMD_PORT": str(self._epmd_port),
            "ERL_EPMD_ADDRESS": _HOST,
            # Without its epmd listening, erl starts `epmd -daemon`, which outlives every test.
            "ERL_FLAGS": "-start_epmd false",
            "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self._dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self._dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self._dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self._dir / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_CRASH_DUMP": str(self._dir / "erl_crash.dump"),
        })
        return env

    def _ctl(self, *args: str) -> None:
        ctl = Path(find_rabbitmq_server() or "rabbitmq-server").with_name("rabbitmqctl")
        result = subprocess.run(
            [str(ctl), "-n", self._node, *args], env=self._env(), capture_output=True, text=True, timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")

    def _wait_for_epmd(self) -> None:
        assert self._epmd is not None and self._epmd_port is not None
        deadline = time.monotonic() + _STOP_TIMEOUT
        while self._epmd.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection((_HOST, self._epmd_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        status = self._epmd.poll()
        if status is None:
            self._epmd.kill()
            self._epmd.wait(_STOP_TIMEOUT)
        raise RuntimeError(
            f"epmd did not listen on {_HOST}:{self._epmd_port} "
            f"({'exited with status ' + str(status) if status is not None else 'timed out'})"
        )

    def _wait_ready(self) -> None:
        # The port opens before the node is ready: wait until an AMQP connection succeeds.
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with status {self._process.returncode}:\n{self.log_tail()}")
            try:
                self.connection().close()
                return
            except pika.exceptions.AMQPError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"rabbitmq-server did not accept connections within {_START_TIMEOUT:g}s:\n{self.log_tail()}")

    @staticmethod
    def _reap_group(pgid: int) -> None:
        """Wait until every process of the node's group is gone (beam's children outlive it briefly),
        so a start right after a kill finds the ports free."""
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def delete_topology(server: RabbitServer, prefix: str) -> None:
    """Delete every queue and exchange under ``prefix`` on ``server``."""
    names = Names(prefix)
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        connection = server.connection()
        try:
            channel = connection.channel()
            for queue in names.all_queues():
                channel.queue_delete(queue)
            for exchange in names.all_exchanges():
                channel.exchange_delete(exchange)
        finally:
            connection.close()


def purge_topology(server: RabbitServer, prefix: str) -> bool:
    """Empty every queue under ``prefix`` on ``server`` (to use the prefix again); False if a
    queue is missing or still has consumers."""
    names = Names(prefix)
    try:
        connection = server.connection()
    except (pika.exceptions.AMQPError, OSError):
        return False
    # Down the ladder, then the runs: a run moving down while we purge lands in a queue not yet
    # purged. Then every queue must be empty.
    order = [*(names.delay(level) for level in reversed(range(LEVELS))), names.runs, names.dead]
    try:
        channel = connection.channel()
        for queue in order:
            if channel.queue_declare(queue, passive=True).method.consumer_count:
                return False
            channel.queue_purge(queue)
        return all(channel.queue_declare(queue, passive=True).method.message_count == 0 for queue in order)
    except (pika.exceptions.AMQPError, OSError):
        return False
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()


def _require_rabbitmq_server() -> None:
    if find_rabbitmq_server() is None or _find_epmd() is None:
        pytest.fail(INSTALL_HINT)


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitServer]:
    """One RabbitMQ node for the whole test session."""
    _require_rabbitmq_server()
    server = RabbitServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def rabbitmq_url(rabbitmq_server: RabbitServer) -> Iterator[str]:
    """The shared node's URL on a fresh virtual host of this test's own, deleted afterwards."""
    vhost = f"t-{secrets.token_hex(4)}"
    url = rabbitmq_server.add_vhost(vhost)
    try:
        yield url
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            rabbitmq_server.delete_vhost(vhost)


@pytest.fixture
def rabbitmq_server_factory() -> Iterator[Callable[..., RabbitServer]]:
    """``make()`` starts a private node; every node made is cleaned up after the test."""
    _require_rabbitmq_server()
    servers: list[RabbitServer] = []

    def make(**options: Any) -> RabbitServer:
        server = RabbitServer(**options).start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.cleanup()
