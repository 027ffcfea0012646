"""`make bench`: serve the app in its own process(es), load it from another, print a table.

Uses TEST_DATABASE_URL / DATABASE_URL (else the embedded PostgreSQL) with a database of its
own, and REDIS_URL / TEST_REDIS_URL (else a Redis it starts) for the Redis rows.
BENCH_QUICK=1 runs a smaller set. `--only chat` runs the chat rows, `--only games` the rows of
rooms of 8 playing mafia and missions (tests/bench/games.py); any other `--only TEXT`
(repeatable) runs just the rows whose label contains one of the texts, without the machine
probes, e.g. the memory-per-stream rows:

    python -m tests.bench.run --only "memory 1w sse" --only "memory 1w ws N="

The database is TEST_DATABASE_NAME + "_bench" (else roundtable_bench), so checkouts sharing a
PostgreSQL do not drop each other's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from backend.core.config import Settings
from backend.core.embedded import embedded_database_url
from backend.core.runtime import asyncpg_connect_args, migrate, recreate_database
from tests.support import NO_RATE_LIMITS, ROOT, RedisServer, free_port, wait_until_up


@contextmanager
def server(
    database_url: str, redis_url: str | None, workers: int, extra: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """Run `python -m backend serve` (what `make run` runs), with `extra` settings; yield its
    URL and pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WORKERS")}
    env |= {
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WORKERS": str(workers),
        "LOG_LEVEL": "warning",
        **NO_RATE_LIMITS,
        "STREAM_QUEUE_SIZE": "4096",
        # Thousands of streams on 20 players' tokens.
        "MAX_STREAMS_PER_PLAYER": "1000000",
        "DB_POOL_SIZE": "20",
        **(extra or {}),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    process = subprocess.Popen([sys.executable, "-m", "backend", "serve"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        time.sleep(0.5 * workers)  # let every worker finish starting
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The rows served as operators deploy (issue 18): two servers, each its own process on its own
# port as two hosts would be, behind nginx (deploy/nginx.conf) and PgBouncer in transaction mode.
DEPLOYED = "pgbouncer+nginx 2 servers"


@contextmanager
def deployed(database_url: str, redis_url: str) -> Iterator[tuple[str, list[int]]]:
    """Run PgBouncer (transaction mode) in front of `database_url`'s server, two servers on it
    (DATABASE_POOLER=transaction) and nginx in front of them; yield nginx's URL and the
    servers' pids."""
    from tests.scale.nginx import render_site, start_nginx
    from tests.scale.pgbouncer import pgbouncer

    workdir = Path(tempfile.mkdtemp(prefix="roundtable-bench-deployed-"))
    database = database_url.rsplit("/", 1)[1]
    with ExitStack() as stack:
        # 20 server connections for both servers' 2 x 20 pooled client connections.
        bouncer = stack.enter_context(pgbouncer(database_url, workdir / "pgbouncer.log", pool_size=20))
        env = {"DATABASE_POOLER": "transaction", "TRUSTED_PROXIES": "127.0.0.1"}
        servers = [stack.enter_context(server(bouncer.url(database), redis_url, 1, env)) for _ in range(2)]
        port = free_port()
        upstreams = " ".join(f"server {url.removeprefix('http://')};" for url, _ in servers)
        site = render_site(
            {"LISTEN": f"127.0.0.1:{port}", "SERVER_NAME": "localhost", "UPSTREAMS": upstreams}
        )
        nginx = start_nginx(workdir, site, connections=8192)
        stack.callback(nginx.wait)
        stack.callback(nginx.terminate)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, nginx)
        yield url, [pid for _, pid in servers]


def loadgen(url: str, pid: int | list[int], *args: str) -> dict[str, Any]:
    """Run the load generator in its own process; return what it measured."""
    pids = [str(p) for p in (pid if isinstance(pid, list) else [pid])]
    command = [sys.executable, "-m", "tests.bench.loadgen", "--url", url, "--server-pids", *pids, *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def game_plans(quick: bool) -> list[tuple[str, bool, int, list[str]]]:
    """The game rows: rooms of 8 playing each ruleset back to back (tests/bench/games.py), over
    HTTP + SSE and over each player's WebSocket, flat out and at fixed offered rates. Each is
    (label, with Redis, workers, loadgen arguments). Quick: 10 rooms for 5 s, one flat-out row
    over HTTP and one paced row over WebSocket per game. BENCH_GAME_ROOMS and
    BENCH_GAME_SECONDS override the rooms and seconds of every game row."""
    rooms = [
        *("--rooms-of-8", os.environ.get("BENCH_GAME_ROOMS") or ("10" if quick else "150")),
        *("--duration", os.environ.get("BENCH_GAME_SECONDS") or ("5" if quick else "10")),
    ]
    plans: list[tuple[str, bool, int, list[str]]] = []
    for game in ("mafia", "missions"):
        http, ws = [*rooms, "--game", game], [*rooms, "--game", game, "--transport", "ws"]
        if quick:
            plans.append((f"{game} memory 1w http, flat out", False, 1, http))
            plans.append((f"{game} memory 1w ws at 100/s", False, 1, [*ws, "--rate", "100"]))
            plans.append((f"{game} {DEPLOYED} http, flat out", True, 2, http))
            continue
        plans.append((f"{game} memory 1w http, flat out", False, 1, http))
        plans.append((f"{game} memory 1w ws, flat out", False, 1, ws))
        for rate in (500, 1000):
            plans.append((f"{game} memory 1w http at {rate}/s", False, 1, [*http, "--rate", str(rate)]))
            plans.append((f"{game} memory 1w ws at {rate}/s", False, 1, [*ws, "--rate", str(rate)]))
        plans.append((f"{game} redis 2w http at 1000/s", True, 2, [*http, "--rate", "1000"]))
        plans.append((f"{game} {DEPLOYED} http, flat out", True, 2, http))
        plans.append((f"{game} {DEPLOYED} ws, flat out", True, 2, ws))
    # A streamer's room (issue 17): one room of 8 playing, thousands watching on SSE.
    watchers = os.environ.get("BENCH_SPECTATORS") or ("200" if quick else "5000")
    for game in ("mafia", "missions"):
        watch = ["--game", game, "--rooms-of-8", "1", "--until-games", "1", "--duration", "300"]
        plans.append((f"{game} spectators 1w sse N={watchers}", False, 1, [*watch, "--spectators", watchers]))
    return plans


def main() -> int:
    """Run every configuration (or those `--only` names) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run")
    parser.add_argument(
        "--only", action="append", default=[], help="chat, games, or rows whose label contains this"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="stream counts of the one-room rows")
    options = parser.parse_args()
    only: list[str] = options.only
    kinds = {"chat", "games"}
    # Label filters skip the machine probes; `chat` and `games` are whole tables and keep them.
    probes = not only or set(only) <= kinds
    quick = os.environ.get("BENCH_QUICK") == "1"
    # A database of its own: TEST_DATABASE_NAME's (a checkout's) with `_bench` after it.
    scratch = (os.environ.get("TEST_DATABASE_NAME") or "roundtable") + "_bench"
    base = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    base = base or embedded_database_url(Settings().data_dir)
    if probes:
        machine = wake_up_round_trips()
        speed = python_loop_ms(), loopback_write_us()
        commits = commit_latency_ms(recreate_database(base, scratch))
    sizes = options.sizes or ([100, 1000] if quick else [100, 1000, 5000])
    rows: list[tuple[str, dict[str, Any]]] = []
    with ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL")
        if not redis_url:
            redis = RedisServer(free_port(), Path(stack.enter_context(tempfile.TemporaryDirectory())))
            redis.start()
            stack.callback(redis.stop)
            redis_url = redis.url
        plans: list[tuple[str, str | None, int, list[str]]] = []
        for broker, url in (("memory", None), ("redis", redis_url)):
            for n in sizes:
                plans.append((f"{broker} 1w sse N={n}", url, 1, ["--streams", str(n), "--transport", "sse"]))
        if not quick and 10000 not in sizes:
            # One worker holding 10,000 SSE streams (issue 16): memory per stream and delivery.
            plans.append(("memory 1w sse N=10000", None, 1, ["--streams", "10000", "--transport", "sse"]))
        for n in sizes:
            plans.append((f"memory 1w ws N={n}", None, 1, ["--streams", str(n), "--transport", "ws"]))
        for n in sizes:
            plans.append((f"redis 2w sse N={n}", redis_url, 2, ["--streams", str(n), "--transport", "sse"]))
        rooms = ["--rooms-of-8", "50" if quick else "150", "--duration", "5"]
        # HTTP commands and SSE streams; then each player's commands over its own WebSocket.
        ws = ["--transport", "ws"]
        for label, url, workers, extra in (
            ("memory 1w", None, 1, []),
            ("redis 1w", redis_url, 1, []),
            ("redis 2w", redis_url, 2, []),
            ("memory 1w ws", None, 1, ws),
            ("redis 2w ws", redis_url, 2, ws),
        ):
            plans.append((f"{label} rooms of 8, flat out", url, workers, [*rooms, *extra]))
        # Open loop: commands due at a fixed rate, latency counted from when each was due.
        for label, url, workers, rate, extra in (
            ("memory 1w", None, 1, 500, []),
            ("memory 1w", None, 1, 1000, []),
            ("memory 1w", None, 1, 1500, []),
            ("memory 1w", None, 1, 2000, []),
            ("redis 2w", redis_url, 2, 1000, []),
            ("redis 2w", redis_url, 2, 2000, []),
            ("memory 1w ws", None, 1, 1000, ws),
            ("memory 1w ws", None, 1, 1500, ws),
            ("memory 1w ws", None, 1, 2000, ws),
            ("redis 2w ws", redis_url, 2, 2000, ws),
        ):
            plans.append(
                (f"{label} rooms of 8 at {rate}/s", url, workers, [*rooms, "--rate", str(rate), *extra])
            )
        # The target's row sits at the edge of one core here: run it again, so its spread shows.
        for run in (2, 3):
            label = f"memory 1w ws rooms of 8 at 2000/s, run {run}"
            plans.append((label, None, 1, [*rooms, "--rate", "2000", *ws]))
        if "games" in only and "chat" not in only:
            plans.clear()
        if "chat" not in only or "games" in only:
            for label, with_redis, workers, args in game_plans(quick):
                plans.append((label, redis_url if with_redis else None, workers, args))
        if filters := [text for text in only if text not in kinds]:
            plans = [plan for plan in plans if any(text in plan[0] for text in filters)]
        for label, url, workers, args in plans:
            print(f"running {label} ...", file=sys.stderr, flush=True)
            # A fresh database each time: nothing left by the run before (its players, still
            # marked connected, would be swept by this server while it is measured).
            database_url = recreate_database(base, scratch)
            migrate(database_url)
            serving = (
                deployed(database_url, url or redis_url)
                if DEPLOYED in label
                else server(database_url, url, workers)
            )
            with serving as (server_url, pid):
                try:
                    rows.append((label, loadgen(server_url, pid, *args)))
                except RuntimeError as exc:  # one row failing does not lose the others
                    print(f"{label} failed: {exc}", file=sys.stderr, flush=True)
    print_table(rows)
    if not probes:
        return 0
    (busy_before, idle_before), (busy_after, idle_after) = machine, wake_up_round_trips()
    print()
    print(
        "This machine: a round trip between two processes took "
        f"{busy_before} µs back to back and {idle_before} µs after 50 ms idle before the runs, "
        f"{busy_after} and {idle_after} µs after them; a spaced command pays the idle one at "
        "every hop (client, server, PostgreSQL)."
    )
    (loop_before, write_before), (loop_after, write_after) = speed, (python_loop_ms(), loopback_write_us())
    print(
        f"A fixed Python loop (2M additions) took {loop_before} ms before and {loop_after} ms after "
        "(the machine's speed, which varies by the hour); one loopback send() to a waiting reader "
        f"cost {write_before} µs before and {write_after} µs after: one event to N subscribers "
        "costs the server at least N of those."
    )
    print(
        "A durable commit on this PostgreSQL (a one-row INSERT, spaced, nothing else running) "
        f"took p50 {commits['p50']} ms, p99 {commits['p99']} ms, max {commits['max']} ms; "
        f"{commits['over_20ms']} of {commits['count']} over 20 ms: every command waits for one, "
        "and a slow one is slow at every subscriber."
    )
    return 0


def commit_latency_ms(database_url: str, count: int = 1500) -> dict[str, float]:
    """Time `count` one-row INSERTs in autocommit, 5 ms apart, on a scratch table: what a
    durable commit (its WAL flushed to this machine's disk) costs, apart from any server."""

    async def run() -> list[float]:
        conn = await asyncpg.connect(**asyncpg_connect_args(database_url))
        try:
            await conn.execute("CREATE TABLE commit_probe (i integer)")
            times = []
            for i in range(count):
                started = time.perf_counter()
                await conn.execute("INSERT INTO commit_probe VALUES ($1)", i)
                times.append(time.perf_counter() - started)
                await asyncio.sleep(0.005)
            return times
        finally:
            await conn.close()

    times = sorted(asyncio.run(run()))
    return {
        "p50": round(times[len(times) // 2] * 1000, 2),
        "p99": round(times[int(len(times) * 0.99)] * 1000, 2),
        "max": round(times[-1] * 1000, 1),
        "over_20ms": sum(t > 0.02 for t in times),
        "count": count,
    }


def wake_up_round_trips() -> tuple[float, float]:
    """Return the median round trip (µs) between two processes over a socket pair, back to
    back and after 50 ms idle: how slowly this machine wakes an idle process, which every
    hop of a command (client, server, PostgreSQL) pays on an otherwise idle machine."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo process
        parent.close()
        while data := child.recv(16):
            child.send(data)
        os._exit(0)
    child.close()
    medians = []
    try:
        for gap in (0.0, 0.05):
            times = []
            for _ in range(60):
                started = time.perf_counter()
                parent.send(b"x")
                parent.recv(16)
                times.append(time.perf_counter() - started)
                time.sleep(gap)
            medians.append(round(sorted(times)[len(times) // 2] * 1e6, 1))
    finally:
        parent.close()
        os.waitpid(pid, 0)
    return medians[0], medians[1]


def python_loop_ms() -> float:
    """Return the best of 3 timings (ms) of a fixed pure-Python loop: how fast this machine's
    cores run Python right now (it varies by the hour on a shared VM)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def loopback_write_us(sockets: int = 200, rounds: int = 50, size: int = 300) -> float:
    """Return the µs one `send()` of an event-sized message costs on a loopback TCP connection
    whose reader (another process) waits for it: the kernel's share of every delivery, which
    no server code can go below (N subscribers cost at least N of these per event)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the reader: drain every connection until they all close
        import selectors

        chooser = selectors.DefaultSelector()
        for _ in range(sockets):
            conn, _ = listener.accept()
            conn.setblocking(False)
            chooser.register(conn, selectors.EVENT_READ)
        open_ = sockets
        while open_:
            for key, _ in chooser.select():
                reader = key.fileobj
                assert isinstance(reader, socket.socket)
                if not reader.recv(65536):
                    chooser.unregister(reader)
                    open_ -= 1
        os._exit(0)
    listener.close()
    writers = [socket.create_connection(("127.0.0.1", port)) for _ in range(sockets)]
    for w in writers:
        w.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"x" * size
    try:
        time.sleep(0.2)  # the reader accepts every connection
        elapsed = 0.0
        for _ in range(rounds):
            started = time.perf_counter()
            for w in writers:
                w.send(message)
            elapsed += time.perf_counter() - started
            time.sleep(0.005)  # the reader catches up, as between events
    finally:
        for w in writers:
            w.close()
        os.waitpid(pid, 0)
    return round(elapsed / (rounds * sockets) * 1e6, 1)


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Print the results as Markdown tables: one room, many rooms of 8 chatting, and rooms of
    8 playing games (each table only when it has rows)."""
    if any("game" not in r for _, r in rows):
        print_chat_tables(rows)
    print_game_table([(label, r) for label, r in rows if "game" in r and "spectators" not in r])
    print_spectator_table([(label, r) for label, r in rows if "spectators" in r])


def print_chat_tables(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """One room's rows, then the rows of many rooms of 8 chatting."""
    print()
    print(
        "| run | streams | p50 ms | p99 ms | max ms | command answered p50 / max ms "
        "| first subscriber p50 ms | deliveries/s | burst commands/s | RSS KiB/stream | lost "
        "| server's first command ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        if "rooms" in r:
            continue
        lat = r["latency"]
        print(
            f"| {label} | {r['streams']} | {lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} "
            f"| {r['answer_p50_ms']} / {r['answer_max_ms']} | {r['first_delivery_p50_ms']} "
            f"| {r['deliveries_per_s']} | {r['burst_commands_per_s']} | {r['rss_kib_per_stream']} "
            f"| {r['undelivered']} | {r['first_command_ms']} |"
        )
    print()
    print(
        "| run | streams | commands/s | p50 ms | p99 ms | max ms | CPU ms per command: server "
        "| PostgreSQL | Redis | load generator | cores busy | lost |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        if "rooms" not in r or "game" in r:
            continue
        lat, cpu = r["latency"], r["cpu_ms_per_command"]
        print(
            f"| {label} | {r['streams']} | {r['commands_per_s']} | {lat['p50_ms']} | {lat['p99_ms']} "
            f"| {lat['max_ms']} | {cpu['server']} | {cpu['postgres']} | {cpu['redis']} "
            f"| {cpu['load generator']} | {cpu['cores busy']} | {r['undelivered']} |"
        )


def print_game_table(games: list[tuple[str, dict[str, Any]]]) -> None:
    """The rows of rooms of 8 playing games."""
    if not games:
        return
    print()
    print(
        "Games (rooms of 8, a new room when a game ends): actions/s; the action's answer, and "
        "its first event at every player who may see it (from when the action was due); "
        "CPU per action (room setup included); skipped: offered ticks with no player ready; "
        "lost: events a fresh replay from ?after=0 holds that the live stream never received."
    )
    print(
        "| run | streams | games | actions/s | answer p50 / p99 ms | delivery p50 / p99 / max ms "
        "| deliveries | CPU ms per action: server | PostgreSQL | Redis | cores busy | refused "
        "| skipped | lost |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in games:
        answer, delivery, cpu = r["answer"], r["delivery"], r["cpu_ms_per_action"]
        print(
            f"| {label} | {r['streams']} | {r['games_finished']} | {r['actions_per_s']} "
            f"| {answer['p50_ms']} / {answer['p99_ms']} "
            f"| {delivery['p50_ms']} / {delivery['p99_ms']} / {delivery['max_ms']} | {r['deliveries']} "
            f"| {cpu['server']} | {cpu['postgres']} | {cpu['redis']} | {cpu['cores busy']} "
            f"| {sum(r['refused'].values())} | {r['skipped_ticks']} | {r['lost']} |"
        )


def print_spectator_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """The rows of one room of 8 playing while spectators watch on SSE."""
    if not rows:
        return
    print()
    print(
        "Spectators (one room of 8 playing one game, flat out; N spectators on SSE): delivery of "
        "each public action's event from when the action was due, at every spectator and at the "
        "last one; the server's memory per spectator stream; lost: public events a spectator "
        "never received (against a spectator's replay from ?after=0)."
    )
    print(
        "| run | spectators | actions/s | delivery p50 / p99 ms | last spectator p50 / p99 / max ms "
        "| spectator deliveries | KiB per spectator | server CPU µs per delivery | lost (players) "
        "| lost (spectators) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        every, last = r["spectator_delivery"], r["last_spectator"]
        print(
            f"| {label} | {r['spectators']} | {r['actions_per_s']} | {every['p50_ms']} / {every['p99_ms']} "
            f"| {last['p50_ms']} / {last['p99_ms']} / {last['max_ms']} | {r['spectator_deliveries']} "
            f"| {r['kib_per_spectator']} | {r['server_us_per_delivery']} | {r['lost']} "
            f"| {r['spectators_lost']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
