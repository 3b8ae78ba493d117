"""Scripts asked for in the same turn of the event loop go to Redis in one pipeline, each with its own
result or error, and a server that lost its scripts (a restart, SCRIPT FLUSH) gets them again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import exceptions as rex

from sts_redis.connection import RedisConnection

ECHO = "return ARGV[1]"
FAIL_ON_BAD = "if ARGV[1] == 'bad' then return redis.error_reply('ERR refused ' .. ARGV[1]) end return ARGV[1]"


def _connection(url: str) -> RedisConnection:
    return RedisConnection(url, connect_timeout=2.0, socket_timeout=5.0)


def _count_pipelines(connection: RedisConnection, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    client = connection.client
    make = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            sizes.append(len(pipe.command_stack))
            return await execute(*a, **k)

        pipe.execute = counted
        return pipe

    monkeypatch.setattr(client, "pipeline", pipeline)
    return sizes


def test_concurrent_scripts_share_one_pipeline_and_each_gets_its_own_reply(redis_url, monkeypatch) -> None:
    async def main() -> None:
        connection = _connection(redis_url)
        await connection.open()
        try:
            assert await connection.run_script(FAIL_ON_BAD, ["first"]) == b"first"  # loads the script
            sizes = _count_pipelines(connection, monkeypatch)
            values = [f"v{i}" for i in range(50)]
            replies = await asyncio.gather(*(connection.run_script(FAIL_ON_BAD, [v]) for v in values))
            assert replies == [v.encode() for v in values]
            assert sizes == [50]

            outcomes = await asyncio.gather(
                connection.run_script(FAIL_ON_BAD, ["ok"]), connection.run_script(FAIL_ON_BAD, ["bad"]),
                connection.run_script(FAIL_ON_BAD, ["fine"]), return_exceptions=True,
            )
            assert outcomes[0] == b"ok" and outcomes[2] == b"fine"
            assert isinstance(outcomes[1], rex.ResponseError) and "refused bad" in str(outcomes[1])
        finally:
            await connection.close()

    asyncio.run(main())


def test_scripts_the_server_lost_are_loaded_again(redis_url) -> None:
    async def main() -> None:
        connection = _connection(redis_url)
        await connection.open()
        try:
            assert await connection.run_script(ECHO, ["a"]) == b"a"
            await connection.client.script_flush()
            assert await asyncio.gather(*(connection.run_script(ECHO, [str(i)]) for i in range(5))) == [
                str(i).encode() for i in range(5)
            ]
            await connection.client.script_flush()
            assert await connection.run_script(ECHO, ["alone"]) == b"alone"  # a batch of one
        finally:
            await connection.close()

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_others_their_replies(redis_url) -> None:
    async def main() -> None:
        connection = _connection(redis_url)
        await connection.open()
        try:
            await connection.run_script(ECHO, ["load"])
            calls = [asyncio.ensure_future(connection.run_script(ECHO, [str(i)])) for i in range(3)]
            await asyncio.sleep(0)
            calls[1].cancel()
            done = await asyncio.gather(*calls, return_exceptions=True)
            assert done[0] == b"0" and done[2] == b"2"
            assert isinstance(done[1], asyncio.CancelledError)
        finally:
            await connection.close()

    asyncio.run(main())


def test_an_unreachable_server_fails_every_caller_of_the_batch(redis_server_factory) -> None:
    async def main() -> None:
        server = redis_server_factory()
        connection = _connection(server.url)
        await connection.open()
        try:
            await connection.run_script(ECHO, ["load"])
            server.kill()
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(connection.run_script(ECHO, [str(i)]) for i in range(4)), return_exceptions=True),
                10,
            )
            assert all(isinstance(outcome, (rex.ConnectionError, OSError)) for outcome in outcomes), outcomes
        finally:
            await connection.close()

    asyncio.run(main())


@pytest.mark.parametrize("callers", [1, 3])
def test_closing_with_a_batch_not_yet_sent_fails_its_callers_as_unreachable(redis_url, callers) -> None:
    async def main() -> list[Any]:
        connection = _connection(redis_url)
        await connection.open()
        await connection.run_script(ECHO, ["load"])
        calls = [asyncio.ensure_future(connection.run_script(ECHO, [str(i)])) for i in range(callers)]
        await asyncio.sleep(0)  # the callers wait; their batch goes out on the next turn
        connection._users = 1
        client, connection._client = connection._client, None  # closed in between, as close() does first
        try:
            return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        finally:
            await client.aclose()

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, rex.ConnectionError) for outcome in outcomes), outcomes
