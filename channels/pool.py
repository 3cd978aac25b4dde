"""Sending slots: reused channel senders, at most N in use per channel per process.

Real providers are far away (an SMTP relay answers in tens of milliseconds, chat
APIs in 100-300 ms), so a process that sends one message at a time is bound by
latency, not CPU. A worker process therefore sends from several threads at once;
the send batch starts up to `ENCORE_SEND_CONCURRENCY[_<CHANNEL>]` threads per
channel, and this module keeps each slot's sender, with its SMTP session or HTTP keep-alive
connection, between messages and between batches.

One pool per (process, channel, template): created lazily in the process that
sends (a prefork child), never inherited across a fork. WhatsApp through the Cloud API
(Apprise's whatsapp:// form, SPEC rule 16) gets `channels.whatsapp_cloud`'s sender,
posting to `whatsapp_api_url`; every other template an Apprise or SMTP sender.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .adapter import ChannelSender, open_sender
from .whatsapp_cloud import DEFAULT_API_URL, WhatsAppCloudSender, is_cloud_api_template


def open_channel_sender(channel: str, template: str, whatsapp_api_url: str = DEFAULT_API_URL) -> ChannelSender:
    """The sender `template` needs: the Cloud API's own for whatsapp://, else Apprise's."""
    if channel == "whatsapp" and is_cloud_api_template(template):
        return WhatsAppCloudSender(template, api_url=whatsapp_api_url)
    return open_sender(channel, template)


class SenderPool:
    """Senders of one channel, kept open between uses; at most `limit` idle ones.

    The number in use at once is bounded by the caller: a send batch starts at most
    `limit` threads per channel, and a prefork child runs one batch at a time."""

    def __init__(self, channel: str, template: str, limit: int, whatsapp_api_url: str = DEFAULT_API_URL) -> None:
        self.channel = channel
        self.template = template
        self.limit = limit
        self.whatsapp_api_url = whatsapp_api_url
        self._idle: list[ChannelSender] = []
        self._lock = threading.Lock()

    @contextmanager
    def lend(self) -> Iterator[ChannelSender]:
        """A sender for this thread. A sender whose user raised is closed rather
        than given back (its connection state is unknown)."""
        with self._lock:
            sender = self._idle.pop() if self._idle else None
        if sender is None:
            sender = open_channel_sender(self.channel, self.template, self.whatsapp_api_url)
        try:
            yield sender
        except BaseException:
            sender.close()
            raise
        with self._lock:
            keep = len(self._idle) < self.limit
            if keep:
                self._idle.append(sender)
        if not keep:
            sender.close()

    def close(self) -> None:
        """Close the idle senders (their connections)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sender in idle:
            sender.close()


_pools: dict[tuple[int, str, str, int, str], SenderPool] = {}
_pools_lock = threading.Lock()


def pool_for(channel: str, template: str, limit: int, whatsapp_api_url: str = DEFAULT_API_URL) -> SenderPool:
    """This process's pool for `channel` sent with `template`."""
    key = (os.getpid(), channel, template, limit, whatsapp_api_url)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = SenderPool(channel, template, limit, whatsapp_api_url)
        return pool


def close_pools() -> None:
    """Close every idle connection of this process's pools (tests, shutdown)."""
    with _pools_lock:
        pools = [pool for (pid, *_), pool in _pools.items() if pid == os.getpid()]
        _pools.clear()
    for pool in pools:
        pool.close()
