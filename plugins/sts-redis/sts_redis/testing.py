"""Test helpers for the Redis backend: a real, throwaway ``redis-server`` and pytest fixtures around it.

:class:`RedisServer` runs one ``redis-server`` process on 127.0.0.1 with a random free port and a fresh
temporary directory, configured entirely on the command line. Its output goes to ``redis.log`` in that
directory, so nothing leaks into the pytest output.

Load the fixtures with ``pytest_plugins = ["sts_redis.testing"]`` in a ``conftest.py``:

* ``redis_server`` -- one shared server for the whole test session;
* ``redis_url`` -- the shared server's URL, with the database emptied (FLUSHALL) before each test;
* ``redis_server_factory`` -- ``make(**options)`` starts private servers (for tests that kill or restart
  them), all stopped at the end of the test.

This module imports only the standard library, pytest and redis-py.
"""

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sts_core.testing.processes import die_with_parent_preexec, stable_free_port

__all__ = [
    "INSTALL_HINT",
    "RedisServer",
    "find_redis_server",
    "redis_server",
    "redis_server_factory",
    "redis_url",
]

#: The message used when ``redis-server`` cannot be found.
INSTALL_HINT = "redis-server is not installed; scripts/test.sh installs it (apt-get install redis-server)"

_HOST = "127.0.0.1"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 20
_BIND_FAILURE_MARKERS = ("Address already in use", "Failed listening on port")


def find_redis_server() -> str | None:
    """Return the path of the ``redis-server`` executable, or None when it is not installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/sbin/redis-server", "/usr/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _no_retry() -> Retry:
    """A redis-py retry policy that does not retry (redis-py 6 retries 3 times with random backoff by default)."""
    return Retry(NoBackoff(), 0)


class RedisServer:
    """A real ``redis-server`` process on 127.0.0.1, on a random free port, in a fresh temporary directory.

    Nothing runs until :meth:`start` (or ``with RedisServer() as server:``). The port is chosen on the first
    start and kept afterwards, so :meth:`restart`, or :meth:`kill` followed by :meth:`start`, brings the
    server back at the same URL with the same directory (and so the same AOF data when ``appendonly``).
    :meth:`cleanup` stops the server and removes the directory; it also runs at interpreter exit.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        maxmemory: str | None = None,
        password: str | None = None,
        executable: str | None = None,
    ) -> None:
        """Prepare a server (not started yet).

        :param appendonly: persist with an append-only file (``appendfsync everysec``), reloaded on restart.
        :param maxmemory: a memory limit such as ``"2mb"``, with ``maxmemory-policy noeviction``, so writes
            beyond it fail with an OOM error.
        :param password: require this password (``requirepass``); :attr:`url` and :meth:`client` include it.
        :param executable: the ``redis-server`` to run; by default the one found by :func:`find_redis_server`.
        :raises FileNotFoundError: when no ``redis-server`` executable is found.
        """
        exe = executable or find_redis_server()
        if exe is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.appendonly = appendonly
        self.maxmemory = maxmemory
        self.password = password
        self.executable = exe
        self._dir = Path(tempfile.mkdtemp(prefix="sts-redis-"))
        self._log = self._dir / "redis.log"
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._cleaned = False
        atexit.register(self.cleanup)

    # -- properties ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port; chosen on the first :meth:`start` and kept for later starts."""
        if self._port is None:
            raise RuntimeError("the Redis server has not been started yet, so it has no port")
        return self._port

    @property
    def dir(self) -> Path:
        """The server's working directory (AOF files and ``redis.log``)."""
        return self._dir

    @property
    def log_path(self) -> Path:
        """The file receiving the server's log and its stdout/stderr."""
        return self._log

    @property
    def pid(self) -> int | None:
        """The process id of the running server, or None when it is not running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        """The connection URL, e.g. ``redis://127.0.0.1:PORT/0`` or ``redis://:PASSWORD@127.0.0.1:PORT/0``."""
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}{_HOST}:{self.port}/0"

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait (up to 10 s) until it answers PING; return self. No-op when running.

        The first start picks a free port, retrying with a new one (up to 5 times) if another process
        grabs it first; later starts reuse the same port.

        :raises RuntimeError: when the server does not come up, with the last lines of its log.
        """
        if self._cleaned:
            raise RuntimeError("this RedisServer was cleaned up; create a new one")
        if self.running:
            return self
        fixed_port = self._port is not None
        error = ""
        for _attempt in range(_PORT_ATTEMPTS):
            port = self._port if fixed_port else stable_free_port(_HOST)  # kept across restarts
            assert port is not None
            ok, error, bind_failed = self._launch(port)
            if ok:
                self._port = port
                return self
            if not bind_failed:
                break
            if fixed_port:
                time.sleep(0.2)  # Our port is taken, perhaps only for a moment.
        raise RuntimeError(error)

    def stop(self) -> None:
        """Stop the server: SIGTERM, wait up to 5 s, then SIGKILL. Does nothing when it is not running."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL) and wait for it, as in a crash. Does nothing when not running."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.wait()
        self._process = None

    def restart(self) -> Self:
        """Stop the server (gracefully) and start it again on the same port and directory; return self."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its temporary directory. Idempotent; also registered with ``atexit``."""
        try:
            self.stop()
        finally:
            if not self._cleaned:
                self._cleaned = True
                shutil.rmtree(self._dir, ignore_errors=True)
                atexit.unregister(self.cleanup)

    def __enter__(self) -> Self:
        """Start the server (if not running) and return it."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server and remove its directory."""
        self.cleanup()

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "-"
        state = "running" if self.running else "stopped"
        return f"<RedisServer {_HOST}:{port} {state} pid={self.pid} dir={self._dir}>"

    # -- talking to it ------------------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new synchronous ``redis.Redis`` for this server; close it when done.

        Defaults: ``decode_responses=False`` and *no retries* (``retry=Retry(NoBackoff(), 0)``): redis-py's own
        default retries connection errors 3 times with random backoff of up to 2 + 4 + 8 s, which makes a test
        talking to a killed server slow and erratic. Keyword arguments go to ``redis.Redis`` and override these.
        """
        options: dict[str, Any] = {
            "host": _HOST,
            "port": self.port,
            "db": 0,
            "password": self.password,
            "decode_responses": False,
            "retry": _no_retry(),
        }
        options.update(kwargs)
        return redis.Redis(**options)

    def flushall(self) -> None:
        """Delete every key in every database (FLUSHALL)."""
        with contextlib.closing(self.client()) as client:
            client.flushall()

    def used_memory(self) -> int:
        """Return ``used_memory`` from ``INFO memory``, in bytes."""
        with contextlib.closing(self.client()) as client:
            return int(client.info("memory")["used_memory"])

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the server log (empty when there is none)."""
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ----------------------------------------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        args = [
            self.executable,
            "--port", str(port),
            "--bind", _HOST,
            "--dir", str(self._dir),
            "--logfile", str(self._log),
            "--daemonize", "no",
            "--protected-mode", "no",
            # No RDB snapshots: the only persistence is the AOF, and only when asked for.
            "--save", "",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        if self.maxmemory is not None:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args

    def _launch(self, port: int) -> tuple[bool, str, bool]:
        """Run the server on ``port``; return (started, error message, failed because the port was taken)."""
        log_start = self._log.stat().st_size if self._log.exists() else 0
        with open(self._log, "ab") as log:
            process = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                start_new_session=True,  # Ctrl-C in the terminal is for pytest; teardown stops the server.
                preexec_fn=die_with_parent_preexec(),  # SIGKILL if the test run dies
            )
        self._process = process
        if self._wait_ready(process, port):
            return True, "", False
        self.kill()
        new_log = self._new_log_text(log_start)
        bind_failed = any(marker in new_log for marker in _BIND_FAILURE_MARKERS)
        tail = "\n".join(new_log.splitlines()[-_LOG_TAIL_LINES:]) or "(empty)"
        if process.returncode is not None and process.returncode >= 0:
            what = f"exited with code {process.returncode} before answering PING"
        else:
            what = f"did not answer PING within {_START_TIMEOUT:g} s (killed)"
        message = f"redis-server on {_HOST}:{port} {what}; last lines of {self._log}:\n{tail}"
        return False, message, bind_failed

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        """Wait until *our* process answers on ``port`` with its data loaded; False if it exits or times out.

        The answering server must report our pid: if another process took the port first, ours exits
        (bind failure) while the other one may well answer PING.
        """
        deadline = time.monotonic() + _START_TIMEOUT
        probe = redis.Redis(
            host=_HOST,
            port=port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=_no_retry(),  # We poll ourselves; redis-py's default backoff would add random seconds.
        )
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return False
                try:
                    info = probe.info("server", "persistence")
                    if int(info["process_id"]) == process.pid and int(info["loading"]) == 0 and probe.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    # Not listening yet, still loading its data (-LOADING), or someone else's server.
                    pass
                time.sleep(0.01)
            return False
        finally:
            probe.close()

    def _new_log_text(self, offset: int) -> str:
        try:
            with open(self._log, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


# -- pytest fixtures --------------------------------------------------------------------------------------


def _require_redis_server() -> None:
    if find_redis_server() is None:
        pytest.fail(INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` shared by the whole test session, started when first requested.

    Fails (never skips) when redis-server is not installed.
    """
    _require_redis_server()
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, with every database emptied (FLUSHALL) first."""
    if not redis_server.running:  # A test stopped it anyway: bring it back rather than fail every later test.
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """A callable ``make(**options) -> RedisServer`` starting a private server, e.g. to kill or restart it.

    The options are those of :class:`RedisServer`. Every server made is stopped and removed after the test.
    """
    _require_redis_server()
    servers: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.cleanup()
