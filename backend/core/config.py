"""Settings read from the environment (and `.env`), one place for every knob."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Configuration; every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    # Requests wait for a pooled connection rather than open new ones: under load, opening
    # and closing overflow connections costs more than the wait.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
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
    allowed_origins: list[str] = Field(default_factory=list)
    ws_max_message_bytes: int = Field(default=16 * 1024, ge=256)
    # permessage-deflate compresses every message once per socket (an event sent to 1,000
    # sockets is compressed 1,000 times) and keeps a zlib context per socket (~90 KiB):
    # off unless asked for; envelopes are small JSON.
    ws_per_message_deflate: bool = False
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    chat_per_second: float = Field(default=5.0, gt=0)
    chat_burst: int = Field(default=10, ge=1)
    # How often each worker looks for phases whose deadline has passed.
    scheduler_seconds: float = Field(default=0.2, gt=0)


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
