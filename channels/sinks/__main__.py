"""`python -m channels.sinks smtp|http`: one sink as a process that counts what it
receives (for benchmarks); prints the count on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from .common import LOCALHOST
from .http_sink import HttpSink
from .smtp_sink import SmtpSink


def main(argv: list[str] | None = None) -> int:
    """Run one sink as a process that counts what it receives."""
    parser = argparse.ArgumentParser(prog="python -m channels.sinks")
    parser.add_argument("kind", choices=("smtp", "http"))
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    if args.kind == "smtp":
        sink: Any = SmtpSink(args.host, parse=False)
        if args.port:
            sink._controller.port = args.port
    else:
        sink = HttpSink(args.host, args.port, record=False)
    sink.start()
    print(f"listening {args.kind} {args.host}:{sink.port}", flush=True)
    started = time.monotonic()
    while not stop.wait(3600):
        pass
    count = sink.count
    sink.stop()
    elapsed = time.monotonic() - started
    print(f"received {count} in {elapsed:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
