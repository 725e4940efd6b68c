"""A client of the application's runs API as its web page is (``useAgentRunStream.js``):
``GET /api/chat/runs/<id>/events?after_seq=<seq>`` read as server-sent events, and a reconnect
from the last seq taken. Used on loopback (tests/app/test_chat_runs.py) and on the cluster
through the web Service (tests/e2e)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-sent events as (event, data) from a response's lines."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip() or "message"
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _seq(text: str) -> tuple[int, int]:
    major, _, minor = text.partition("-")
    return int(major), int(minor)


class RunReader:
    """The web page's run client (useAgentRunStream.js): events after the last seq it took, and a
    reconnect from there; strict where the page is lenient: an event sent twice fails."""

    def __init__(self, run_id: str, auth: dict[str, str]) -> None:
        self.run_id = run_id
        self.auth = auth
        self.last_seq = "0"
        self.taken: list[str] = []  # the seqs taken, in order
        self.text = ""
        # How the last read ended: the run's last event (finished, error, interrupted) as the page
        # stops on it, or "close:<status>" when the stream closed on an ended run.
        self.ended: str | None = None

    def read(self, base: str, on_word: Callable[[int], None] = lambda n: None) -> None:
        """Read through the site at *base* until the run ended; ``on_word(n)`` after the n-th
        word taken."""
        url = f"{base}/api/chat/runs/{self.run_id}/events"
        words = 0
        with httpx.stream(
            "GET", url, params={"after_seq": self.last_seq}, headers=self.auth, timeout=60
        ) as r:
            if r.status_code != 200:
                r.read()
                r.raise_for_status()  # an httpx.HTTPStatusError: the caller decides whether to retry
            for event, data in _sse(r.iter_lines()):
                seq = data.get("seq")
                if seq is not None:
                    # The web page skips these; the kit's cursor (integration.chat_runs) sends none.
                    assert self.last_seq == "0" or _seq(seq) > _seq(self.last_seq), (
                        f"event {seq} sent again after {self.last_seq}"
                    )
                    self.last_seq = seq
                    self.taken.append(seq)
                payload = data.get("payload") or {}
                for chunk in payload.get("items") or [payload.get("chunk") or {}]:
                    if chunk.get("status") == "loading" and isinstance(chunk.get("response"), str):
                        self.text += chunk["response"]
                        words += 1
                        on_word(words)
                if event in ("finished", "error", "interrupted"):
                    self.ended = event
                    return
                if event == "close" and data.get("status"):
                    self.ended = f"close:{data['status']}"
                    return
