"""A counting SMTP sink for benchmarks, with a live status port.

`python -m channels.sinks smtp` counts too, but only prints its count when it
stops; a throughput benchmark has to watch the count grow and know the moment
the N-th message arrived, and to check for duplicates it needs the recipients.
So this process runs aiosmtpd (the same server class as channels.sinks, not
parsing the messages either) and a one-line status protocol beside it:

    $ python -m bench.smtpsink --port 2525 --status-port 2526 [--latency-ms 50] [--pipelining]
    listening smtp 127.0.0.1:2525 status 127.0.0.1:2526

    status port, one command per line, one JSON line back:
      status  -> {"count", "distinct", "first_at", "last_at", "sessions", "bytes"}
      reset   -> the same, then zeroes everything (between two measurements)

`first_at`/`last_at` are wall-clock (time.time()) arrival times of the first and
last message, so another process on the same machine can time a run with them.

`--latency-ms` makes it answer each message (the reply to DATA) after that delay,
like a relay far away; connections wait independently, so N concurrent clients get
up to N / latency messages per second. `arrivals` (status command) returns and
clears the per-recipient arrival times, for latency measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from aiosmtpd.smtp import SMTP


class Counter:
    """aiosmtpd handler: accept everything, count messages and distinct recipients."""

    def __init__(self, latency_ms: float = 0.0, pipelining: bool = False) -> None:
        self.latency = latency_ms / 1000
        self.pipelining = pipelining
        self.arrivals: list[tuple[str, float]] = []
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.bytes = 0
        self.sessions = 0
        self.recipients: set[str] = set()
        self.first_at: float | None = None
        self.last_at: float | None = None

    def snapshot(self) -> dict:
        return {"count": self.count, "distinct": len(self.recipients), "first_at": self.first_at,
                "last_at": self.last_at, "sessions": self.sessions, "bytes": self.bytes}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions += 1
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.count += 1
        self.bytes += len(envelope.content or b"")
        self.recipients.update(address.lower() for address in envelope.rcpt_tos)
        self.arrivals.extend((address.lower(), now) for address in envelope.rcpt_tos)
        if self.latency:
            await asyncio.sleep(self.latency)
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, status_port: int, latency_ms: float = 0.0, pipelining: bool = False) -> None:
    counter = Counter(latency_ms, pipelining)
    loop = asyncio.get_running_loop()
    # hostname given: aiosmtpd would otherwise resolve the local FQDN per connection.
    smtp_server = await loop.create_server(lambda: SMTP(counter, hostname="bench-sink"), host=host, port=port)
    await serve_until_stopped(counter, smtp_server, "smtp", host, status_port)


async def serve_until_stopped(counter: Counter, server: asyncio.Server, kind: str, host: str,
                              status_port: int) -> None:
    """Beside `server`, the status port the benchmarks read (`count`, `reset`, `arrivals`);
    print where both listen, then serve until SIGTERM or SIGINT. Shared by the SMTP and
    HTTP stand-ins."""
    async def status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                command = line.decode().strip()
                if command == "arrivals":
                    arrivals, counter.arrivals = counter.arrivals, []
                    writer.write((json.dumps(arrivals) + "\n").encode())
                else:
                    writer.write((json.dumps(counter.snapshot()) + "\n").encode())
                if command == "reset":
                    counter.reset()
                    counter.arrivals = []
                await writer.drain()
        finally:
            writer.close()

    status_server = await asyncio.start_server(status, host=host, port=status_port)
    real_port = server.sockets[0].getsockname()[1]
    real_status = status_server.sockets[0].getsockname()[1]
    print(f"listening {kind} {host}:{real_port} status {host}:{real_status}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    await stop.wait()
    print(f"received {counter.count} in {time.monotonic() - started:.1f}s", flush=True)
    server.close()
    status_server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.smtpsink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--status-port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="answer each message after this delay")
    parser.add_argument("--pipelining", action="store_true",
                        help="advertise RFC 2920 PIPELINING (aiosmtpd does not by default; most relays do)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.status_port, args.latency_ms, args.pipelining))
    return 0


if __name__ == "__main__":
    sys.exit(main())
