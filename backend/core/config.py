"""Settings read from the environment (and `.env`), one place for every knob."""

from __future__ import annotations

import json
from functools import lru_cache
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Configuration; every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # Reverse proxies (deploy/): the peers whose X-Forwarded-For and X-Forwarded-Proto are
    # believed, as addresses or networks (a JSON list or comma-separated; "*" any peer).
    # Empty (the default), nobody's are: the client address is the connection's peer.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    workers: int = Field(default=1, ge=1)
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    # Requests wait for a pooled connection rather than open new ones: under load, opening
    # and closing overflow connections costs more than the wait.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # A connection pooler between the servers and PostgreSQL (issue 18): "transaction" when it
    # hands a server connection out per transaction (PgBouncer's pool_mode = transaction), so
    # nothing may outlive a transaction on it: no named prepared statements (see
    # backend/core/db.py). "none" for PostgreSQL itself or a pooler in session mode.
    database_pooler: Literal["none", "transaction"] = "none"
    # Database faults (dbfaults): a 503 `database_unavailable` tells the client to retry after
    # this long (Retry-After); a restart of PostgreSQL takes about a second.
    db_retry_after_seconds: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Hostile inputs: JSON bodies and WebSocket commands nesting arrays/objects deeper are refused (422).
    max_json_depth: int = Field(default=32, ge=4, le=200)
    # Connections and shutdown (issue 13): a connection must send a whole request (headers and
    # body) within this long of opening or of its request's first byte, else it is closed.
    request_read_timeout_seconds: float = Field(default=5.0, gt=0)
    # Open streams (SSE and WebSocket together) per player (across workers, with Redis), and
    # per process in all; 0 = derived from the descriptor limit (503 before they run out).
    max_streams_per_player: int = Field(default=8, ge=1)
    max_streams: int = Field(default=0, ge=0)
    streams_retry_after_seconds: int = Field(default=5, ge=1)
    # On SIGTERM: how long in-flight commands and streams' last writes may take before the rest is cut.
    shutdown_drain_seconds: int = Field(default=10, ge=1)
    log_level: str = "info"

    # Streams (SSE and WebSocket)
    stream_max_seconds: float = Field(default=1800.0, gt=0)
    stream_queue_size: int = Field(default=1024, ge=1)
    heartbeat_seconds: float = Field(default=15.0, gt=0, le=15.0)
    sse_retry_ms: int = Field(default=1000, ge=0)
    # A lost doorbell delays delivery by at most this long.
    catchup_seconds: float = Field(default=1.0, gt=0)
    # A player who reconnects within this long never appears disconnected.
    presence_grace_seconds: float = Field(default=2.0, ge=0)
    # Browser origins allowed to open a WebSocket; "*" allows any. Same-host is always allowed.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Browsers (CORS, security headers, stream tickets): origins whose pages may call the HTTP
    # API (a JSON list or comma-separated; "*" any; the page's own origin needs no entry).
    # They may also open WebSockets, as ALLOWED_ORIGINS. A stream ticket opens one stream
    # within this many seconds.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    stream_ticket_seconds: float = Field(default=30.0, gt=0, le=600)
    ws_max_message_bytes: int = Field(default=16 * 1024, ge=256)
    # permessage-deflate compresses every message once per socket (an event sent to 1,000
    # sockets is compressed 1,000 times) and keeps a zlib context per socket (~90 KiB):
    # off unless asked for; envelopes are small JSON.
    ws_per_message_deflate: bool = False
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    chat_per_second: float = Field(default=5.0, gt=0)
    chat_burst: int = Field(default=10, ge=1)
    # Rate limits (ratelimit): chat above and the other commands per player; rooms created and
    # joins per client address. Shared by every worker through Redis when REDIS_URL is set,
    # else per process. A Redis call failing or slower than the timeout falls back to this
    # process's limits, and Redis is tried again after `rate_limit_retry_seconds`.
    commands_per_second: float = Field(default=5.0, gt=0)
    commands_burst: int = Field(default=20, ge=1)
    rooms_per_minute: float = Field(default=10.0, gt=0)
    rooms_burst: int = Field(default=5, ge=1)
    joins_per_minute: float = Field(default=30.0, gt=0)
    joins_burst: int = Field(default=20, ge=1)
    rate_limit_redis_timeout: float = Field(default=0.5, gt=0)
    rate_limit_retry_seconds: float = Field(default=2.0, gt=0)
    # How often each worker looks for phases whose deadline has passed.
    scheduler_seconds: float = Field(default=0.2, gt=0)
    # Room lifecycle: a lobby nobody is connected to closes after LOBBY_IDLE_MINUTES; a game
    # whose players are all disconnected is abandoned after GAME_IDLE_MINUTES; finished and
    # closed rooms are deleted RETENTION_DAYS after they ended. Fractions welcome (tests).
    # Each worker looks for such rooms every LIFECYCLE_SWEEP_SECONDS (one indexed query).
    lobby_idle_minutes: float = Field(default=30.0, gt=0)
    game_idle_minutes: float = Field(default=15.0, gt=0)
    retention_days: float = Field(default=30.0, gt=0)
    lifecycle_sweep_seconds: float = Field(default=5.0, gt=0)
    # Operators (backend.admin): the bearer token of `/admin` (the API and the page). Unset or
    # empty, `/admin` does not exist (404, as an unknown path). A secret: never shown in reprs.
    admin_token: SecretStr = SecretStr("")

    @field_validator("allowed_origins", "cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        """Read a list of origins from a JSON list or a comma-separated string."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):
            return [o.strip().rstrip("/") if isinstance(o, str) else o for o in value if o != ""]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _address_list(cls, value: object) -> object:
        """Read addresses and networks from a JSON list or a comma-separated string; refuse
        anything else (uvicorn would silently treat a typo as a name no peer has)."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list):
            return value
        entries = [str(entry).strip() for entry in value if str(entry).strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ip_network(entry, strict=False) if "/" in entry else ip_address(entry)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return entries

    @property
    def websocket_origins(self) -> list[str]:
        """Origins (besides the same host) allowed to open a WebSocket."""
        return [*self.allowed_origins, *self.cors_origins]


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
