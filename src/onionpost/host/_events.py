"""Fan-out of daemon events to local API subscribers, bounded per subscriber.

A subscriber that does not keep up is dropped (its channel closed), never
waited for: the daemon's delivery work must not stall behind a slow reader.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from onionpost import api
from onionpost.errors import ConfigError

log = logging.getLogger("onionpost.daemon")

TOPICS: Final = frozenset(api.EVENTS)
SUBSCRIBER_BUFFER: Final = 1024
MAX_SUBSCRIBERS: Final = 64


class EventHub:
    def __init__(self) -> None:
        self._subscribers: list[tuple[frozenset[str], trio.MemorySendChannel[dict[str, Any]]]] = []

    def subscribe(self, topics: list[str]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        wanted = frozenset(topics)
        if not wanted or not wanted <= TOPICS:
            raise ConfigError(f"topics are some of {sorted(TOPICS)}")
        self._prune()
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise ConfigError("too many subscribers")
        send, receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_BUFFER)
        self._subscribers.append((wanted, send))
        return receive

    def wants(self, topic: str) -> bool:
        """Whether anyone listens to ``topic`` (so building its data is worth it)."""
        return any(topic in topics for topics, _ in self._subscribers)

    def publish(self, record: object) -> None:
        """Send an event record (:data:`onionpost.api.EVENTS`) to its topic's subscribers."""
        topic = api.topic_of(record)
        if not self.wants(topic):
            return
        event = {"event": topic, "data": api.encode(record)}
        for topics, channel in list(self._subscribers):
            if topic not in topics:
                continue
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                log.warning("event=subscriber_dropped reason=slow")
                channel.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                channel.close()
        self._prune()

    def _prune(self) -> None:
        alive = []
        for topics, channel in self._subscribers:
            try:
                # A closed channel raises on send; statistics tell us without sending.
                if channel.statistics().open_receive_channels == 0:
                    channel.close()
                    continue
            except trio.ClosedResourceError:
                continue
            alive.append((topics, channel))
        self._subscribers = alive

    def close(self) -> None:
        for _, channel in self._subscribers:
            channel.close()
        self._subscribers = []
