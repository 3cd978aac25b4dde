"""Local stand-ins for providers: a real SMTP server and a real HTTP endpoint.

The demo and the tests deliver through real Apprise and real sockets to these,
so what they check is what production would do, minus the provider. They live
in the package (not under tests/) because the demo and the benchmarks use them.

Run alone for benchmarks (counts messages, prints the count on SIGTERM/SIGINT):
    python -m channels.sinks smtp --port 2525
    python -m channels.sinks http --port 9100
"""

from __future__ import annotations

from .common import LOCALHOST, Collector
from .http_sink import HttpSink, LocalHttpServer, ReceivedRequest
from .smtp_sink import ReceivedEmail, SmtpSink

__all__ = ["LOCALHOST", "Collector", "HttpSink", "LocalHttpServer", "ReceivedEmail", "ReceivedRequest", "SmtpSink"]
