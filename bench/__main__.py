"""`python -m bench NAME [OPTIONS]`: run one benchmark (see `python -m bench --help`)."""

from __future__ import annotations

import sys

BENCHMARKS = {
    "fanout": ("bench.fanout", "N buyers of one livestream: time to the last message vs the endpoint's raw capacity"),
    "intake": ("bench.intake", "N events from `encore emit FILE` to applied orders: events/s and peak memory"),
    "latency": ("bench.latency", "single orders at a steady rate: emit to message at the endpoint, p50/p95/p99"),
    "campaign": ("bench.campaign", "a refill-reminder run over N stored customers: time and peak RSS"),
    "crash": ("bench.crash", "SIGKILL the worker 3x and lose the queue once while sending: each recipient once?"),
    "outage": ("bench.outage", "a chat API answers 503 for a while: every message sent once after it recovers?"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        print("usage: python -m bench NAME [--help | OPTIONS]\n\nbenchmarks:")
        for name, (_, about) in BENCHMARKS.items():
            print(f"  {name:<10} {about}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    module = importlib.import_module(BENCHMARKS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
