"""A shop for the fan-out bench (`python -m bench fanout --shop shopify`): the Shopify
Admin API stand-in (tests/standins/shopify_admin.py) in its own process, answering each
call after 100 ms with a 1,000-point cost bucket restored at 100 points/s (a standard
shop's limits), and the shops file that makes it the `default` shop's platform, so the
bench's events (which name no shop) have their codes made there before they are sent."""

from __future__ import annotations

import json
import sys
import time
import urllib.request

SHOP_LATENCY_MS = 100
SHOP_BUCKET = 1000
SHOP_RESTORE = 100
TOKEN_VARIABLE = "BENCH_SHOPIFY_TOKEN"
TOKEN = "shpat_bench"


def start_shopify(stack, skus: dict[str, str]) -> dict[str, str]:
    """Start the stand-in under `stack` (stopped with its other processes); returns the
    variables every Encore process needs to use it as the `default` shop."""
    log_path = stack.data_dir / "shopify.log"
    argv = [sys.executable, "-m", "tests.standins.shopify_admin", "--latency-ms", str(SHOP_LATENCY_MS),
            "--bucket", str(SHOP_BUCKET), "--restore", str(SHOP_RESTORE), "--token", TOKEN,
            *(arg for sku, price in skus.items() for arg in ("--seed-sku", f"{sku}={price}"))]
    proc = stack.start("shop", argv, "shopify.log")
    deadline = time.monotonic() + 30
    url = ""
    while not url.startswith("http"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Shopify stand-in did not start: {log_path.read_text()}")
        time.sleep(0.1)
        url = log_path.read_text().strip().splitlines()[-1] if log_path.read_text().strip() else ""
    stack.shop_base = url.split("/admin/")[0]
    shops_file = stack.data_dir / "shops.toml"
    shops_file.write_text(f'[shops.default]\nplatform = "shopify"\ndomain = "bench-shop.myshopify.com"\n'
                          f'api_url = "{url}"\ntoken_env = "{TOKEN_VARIABLE}"\n'
                          f'webhook_secret_env = "BENCH_SHOPIFY_SECRET"\n')
    return {"ENCORE_SHOPS_FILE": str(shops_file), TOKEN_VARIABLE: TOKEN, "BENCH_SHOPIFY_SECRET": "bench"}


def shop_get(stack, what: str) -> dict:
    """The stand-in's own inspection endpoints (`codes`, `stats`)."""
    with urllib.request.urlopen(f"{stack.shop_base}/_standin/{what}", timeout=60) as answer:
        return json.loads(answer.read())
