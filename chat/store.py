"""Message history of this node, in SQLite: nothing shown in the UI is ever silently lost.

Owns the messages table and message states: outgoing `sending` -> `delivered`
(acknowledged) or `failed` (with a reason, retryable); incoming `received`, the most recent
KEEP_PER_PEER of each peer and KEEP_IN_ALL in all (the quota that keeps peers from filling the disk).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id TEXT NOT NULL,
    peer_ip TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    text TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (id, direction, peer_ip)
);
CREATE INDEX IF NOT EXISTS message_peer ON message (peer_ip, created_at);
CREATE INDEX IF NOT EXISTS message_received ON message (direction, created_at);
"""
# Received messages kept, per peer and in all: a peer's chat can never fill the disk this node's
# agent keeps its state on (at most 5,000 frames of 16 KiB, 80 MB); the oldest go first.
KEEP_PER_PEER = 200
KEEP_IN_ALL = 5000
FIELDS = ("id", "peer_ip", "direction", "text", "state", "reason", "created_at", "updated_at")


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=wal")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def _row(self, key: tuple) -> dict:
        row = self.db.execute(f"SELECT {', '.join(FIELDS)} FROM message WHERE id=? AND direction=? AND peer_ip=?",
                              key).fetchone()
        return dict(zip(FIELDS, row, strict=True))

    def outgoing(self, message_id: str, peer_ip: str, text: str) -> dict:
        now = time.time()
        with self.lock:
            self.db.execute("INSERT INTO message VALUES (?, ?, 'out', ?, 'sending', NULL, ?, ?)",
                            (message_id, peer_ip, text, now, now))
            return self._row((message_id, "out", peer_ip))

    def mark(self, message_id: str, peer_ip: str, state: str, reason: str | None = None) -> dict:
        with self.lock:
            self.db.execute("UPDATE message SET state=?, reason=?, updated_at=? WHERE id=? AND direction='out' "
                            "AND peer_ip=?", (state, reason, time.time(), message_id, peer_ip))
            return self._row((message_id, "out", peer_ip))

    def incoming(self, message_id: str, peer_ip: str, text: str) -> tuple[dict, bool]:
        """Store a received message; a resend of the same id is acknowledged, not duplicated."""
        with self.lock:
            now = time.time()  # ordered by when it arrived here: the sender's clock may be off
            cursor = self.db.execute("INSERT OR IGNORE INTO message VALUES (?, ?, 'in', ?, 'received', NULL, ?, ?)",
                                     (message_id, peer_ip, text, now, now))
            row = self._row((message_id, "in", peer_ip))
            if cursor.rowcount == 1:
                self._prune(peer_ip)
            return row, cursor.rowcount == 1

    def _prune(self, peer_ip: str) -> None:
        """Drop the oldest received messages past KEEP_PER_PEER of this peer's and KEEP_IN_ALL."""
        self.db.execute("DELETE FROM message WHERE rowid IN (SELECT rowid FROM message WHERE direction='in' "
                        "AND peer_ip=? ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
                        (peer_ip, KEEP_PER_PEER))
        self.db.execute("DELETE FROM message WHERE rowid IN (SELECT rowid FROM message WHERE direction='in' "
                        "ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)", (KEEP_IN_ALL,))

    def get_outgoing(self, message_id: str) -> dict | None:
        with self.lock:
            row = self.db.execute(f"SELECT {', '.join(FIELDS)} FROM message WHERE id=? AND direction='out'",
                                  (message_id,)).fetchone()
        return dict(zip(FIELDS, row, strict=True)) if row else None

    def history(self, peer_ip: str, limit: int = 500) -> list[dict]:
        with self.lock:
            rows = self.db.execute(f"SELECT {', '.join(FIELDS)} FROM message WHERE peer_ip=? "
                                   "ORDER BY created_at, rowid LIMIT ?", (peer_ip, limit)).fetchall()
        return [dict(zip(FIELDS, row, strict=True)) for row in rows]

    def fail_unfinished(self) -> None:
        """After a restart, a message still `sending` was interrupted: say so instead of hanging."""
        with self.lock:
            self.db.execute("UPDATE message SET state='failed', reason='interrupted by a restart', updated_at=? "
                            "WHERE state='sending'", (time.time(),))
