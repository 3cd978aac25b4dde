"""A counting HTTP endpoint for benchmarks: a stand-in for WhatsApp, Twilio, LINE or
Telegram APIs, which answer each request after 100-300 ms.

    $ python -m bench.httpsink --port 9100 --status-port 9101 --latency-ms 150
    listening http 127.0.0.1:9100 status 127.0.0.1:9101

Every request (any method, any path) is answered `200 {"ok": true}` after
`--latency-ms`; HTTP/1.1 keep-alive is honoured (and `Connection: close`, as sent by
clients without a session). Connections wait independently, so N concurrent clients
get up to N / latency requests per second. The recipient is the last path segment,
percent-decoded (`/wa/%2B5511...` -> `+5511...`), as Encore's `json://host/wa/{whatsapp}`
channel template puts it there.

The status port speaks the protocol of bench.smtpsink: `status`, `reset`, `arrivals`.
Plain asyncio (no framework): the benchmark must measure the senders, not this server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import unquote

from bench.smtpsink import Counter, serve_until_stopped

RESPONSE = b'{"ok": true}'


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: Counter) -> None:
    counter.sessions += 1
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            now = time.time()
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            recipient = unquote(path.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
            if counter.first_at is None:
                counter.first_at = now
            counter.last_at = now
            counter.count += 1
            counter.bytes += len(body)
            counter.recipients.add(recipient)
            counter.arrivals.append((recipient, now))
            if counter.latency:
                await asyncio.sleep(counter.latency)
            close = headers.get("connection", "").lower() == "close" or parts[-1] == "HTTP/1.0"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(RESPONSE)).encode() + (b"\r\nConnection: close" if close else b"")
                         + b"\r\n\r\n" + RESPONSE)
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def serve(host: str, port: int, status_port: int, latency_ms: float) -> None:
    counter = Counter(latency_ms)
    server = await asyncio.start_server(lambda r, w: handle(r, w, counter), host=host, port=port, backlog=1024)
    await serve_until_stopped(counter, server, "http", host, status_port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.httpsink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--status-port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="answer each request after this delay")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.status_port, args.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
