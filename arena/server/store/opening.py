"""Opening a store by URL: the one place that knows every backend (so the `Store` interface,
which the backends import, imports none of them)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from arena.server.store.base import Store
from arena.server.store.rows import DB_NAME, StoreError


def open_store(url: str | Path, *, durability: str = "full") -> Store:
    """Opens (creating if needed) the store at a database URL (sqlite:///..., postgresql://...), or at
    a store folder (-> SQLite)."""
    text = str(url)
    if "://" not in text:
        folder = Path(text)
        folder.mkdir(parents=True, exist_ok=True)
        text = f"sqlite:///{(folder / DB_NAME).resolve()}"
    parsed = urlparse(text)
    if parsed.scheme == "sqlite":
        from arena.server.store.sqlite import SqliteStore

        return SqliteStore(text, durability=durability)
    if parsed.scheme in ("postgresql", "postgres"):
        from arena.server.store.postgres import PostgresStore

        return PostgresStore(text, durability=durability)
    raise StoreError(f"database URL {parsed.scheme}://...: unsupported scheme {parsed.scheme!r} "
                     "(supported: sqlite:///path, postgresql://user@host/dbname)")


def default_url(store_dir: str | Path) -> str:
    return f"sqlite:///{(Path(store_dir) / DB_NAME).resolve()}"
