"""Production smoke: install Encore as a user does and run the Procfile as written.

Kept apart from the pytest suite and its fixtures on purpose: two production
crashes once hid behind a green suite because the suite's test extra installed a
module the Redis transport needs, and its fixtures created a folder the product
never creates. So this script

1. builds a wheel and installs it (non-editable, no test extra) into a new venv,
   so missing dependencies and missing package data (templates, locales, markets
   file, migrations, campaign files, web assets, the Procfile that `encore procfile`
   prints) show up;
2. in a new, empty folder, with only the settings the README's Production section
   names, starts every process the `Procfile` lists, exactly as written there;
3. emits one order with that venv's `encore emit` and waits for the email at a
   local SMTP server it runs itself;
4. does the same with the RabbitMQ broker URL, then runs `encore demo` from the
   same wheel in another empty folder.

Run: `python tests/smoke/production_smoke.py` (needs PostgreSQL, Redis, RabbitMQ
on 127.0.0.1, as in CI). Exit 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("ENCORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ENCORE_SMOKE_REDIS_URL", "redis://127.0.0.1:6379/9")
RABBIT_URL = os.environ.get("ENCORE_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")
WEBHOOK_SECRET = "smoke-webhook-secret"
PROCESS_START_SECONDS = 90
EMAIL_WAIT_SECONDS = 120


def log(text: str) -> None:
    print(f"[smoke {datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def procfile_processes(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """`name: command` lines, in order; comments and blank lines skipped."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        processes[name.strip()] = command.strip()
    if not processes:
        raise SystemExit("Procfile lists no process")
    return processes


def wait_until(what: str, predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"FAILED: {what} within {timeout:.0f}s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quiet(command: list[str]) -> None:
    """Run `command`; show its output only when it fails (pip's index warnings are noise)."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(command)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


class Mailbox:
    """A real SMTP server on 127.0.0.1 that keeps the recipients of what it receives."""

    def __init__(self) -> None:
        self.recipients: list[str] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port


def build_venv(work: Path) -> Path:
    """A new venv with the wheel built from this checkout (no test extra); returns its bin/."""
    dist = work / "dist"
    log("building the wheel")
    # From a clean copy: only what the repository holds, nothing a developer left around.
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "var", "__pycache__", ".*_cache", ".hypothesis"))
    quiet([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)])
    [wheel] = dist.glob("encore-*.whl")
    venv = work / "venv"
    quiet([sys.executable, "-m", "venv", str(venv)])
    log(f"installing {wheel.name} into a new venv, with the versions constraints.txt pins")
    quiet([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)])
    return venv / "bin"


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
failed = []
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    for module in pkgutil.walk_packages(package.__path__, top + "."):
        if ".migrations." in module.name:
            continue  # Alembic loads these itself, with its context
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed.append(f"{module.name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed) or "every module imports")
sys.exit(1 if failed else 0)
"""


def wheel_procfile(bin_dir: Path, work: Path) -> None:
    """A user of the wheel has no checkout: `encore procfile` must give them the Procfile
    this smoke runs, byte for byte."""
    shipped = subprocess.run(["encore", "procfile"], cwd=work, capture_output=True, text=True, timeout=120,
                             env=user_env(bin_dir, {}))
    if shipped.returncode != 0 or shipped.stdout != (ROOT / "Procfile").read_text():
        raise SystemExit(f"FAILED: the wheel's `encore procfile` is not the repository's Procfile:\n"
                         f"{shipped.stdout}{shipped.stderr[-2000:]}")
    log("the wheel's `encore procfile` is the repository's Procfile")


def import_every_module(bin_dir: Path, work: Path) -> None:
    """Nothing the program imports may arrive only through the test extra: import every
    module of the installed package (code paths the smoke does not run included)."""
    packages = sorted({p.split(".")[0] for p in _installed_packages(bin_dir)})
    done = subprocess.run([str(bin_dir / "python"), "-c", IMPORT_EVERY_MODULE, *packages], cwd=work,
                          capture_output=True, text=True, timeout=300, env=user_env(bin_dir, {}))
    if done.returncode != 0:
        raise SystemExit(f"FAILED: modules that do not import without the test extra:\n{done.stdout}{done.stderr[-2000:]}")
    log(f"every module of {', '.join(packages)} imports without the test extra")


def _installed_packages(bin_dir: Path) -> list[str]:
    """The top-level packages the wheel installed (from its RECORD)."""
    site = next((bin_dir.parent / "lib").glob("python3*/site-packages"))
    [record] = site.glob("encore-*.dist-info/RECORD")
    names = {line.split("/", 1)[0] for line in record.read_text().splitlines() if "/" in line}
    return sorted(n for n in names if not n.endswith((".dist-info", ".data")) and n != "..")


def user_env(bin_dir: Path, settings: dict[str, str]) -> dict[str, str]:
    """The machine's environment without any ENCORE_* leftovers, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(settings)
    return env


def start_procfile(folder: Path, env: dict[str, str], logs: Path) -> dict[str, subprocess.Popen]:
    processes = {}
    for name, command in procfile_processes().items():
        log(f"starting {name}: {command}")
        out = open(logs / f"{name}.log", "w")
        processes[name] = subprocess.Popen(["sh", "-c", command], cwd=folder, env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
    return processes


def stop(processes: dict[str, subprocess.Popen]) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def check_alive(processes: dict[str, subprocess.Popen], logs: Path) -> None:
    for name, proc in processes.items():
        if proc.poll() is not None:
            raise SystemExit(f"FAILED: `{name}` exited with {proc.returncode}:\n"
                             f"{(logs / f'{name}.log').read_text()[-3000:]}")


def zone_at_noon(now: datetime) -> str:
    """A fixed-offset zone where it is about midday now, so quiet hours never hold the email."""
    offset = (12 - now.hour + 12) % 24 - 12  # hours to add to UTC to reach local noon, in -12..11
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "Etc/GMT"


def web_port(command: str) -> int:
    found = re.search(r"--port[ =](\d+)", command)
    return int(found.group(1)) if found else 8000


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def order_line(run: str, email: str) -> str:
    return json.dumps({
        "id": f"smoke-{run}", "type": "order.paid", "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"order_id": f"smoke-order-{run}", "currency": "USD",
                 "customer": {"id": f"smoke-{run}", "name": "Smoke Test", "country": "US",
                              "timezone": zone_at_noon(datetime.now(UTC)),
                              "email": email, "consent": ["email"]},
                 "items": [{"sku": "tea", "name": "Tea", "unit_price": "10.00", "quantity": 1}]},
    })


def run_production(bin_dir: Path, work: Path, broker_url: str, label: str) -> None:
    """The Procfile's processes against PostgreSQL and `broker_url`; one order → one email."""
    database = f"encore_smoke_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    if broker_url.startswith("redis://"):
        import redis

        redis.Redis.from_url(broker_url).flushdb()  # the smoke's own db: no queue left from an earlier run
    folder = Path(tempfile.mkdtemp(prefix=f"encore-{label}-", dir=work))
    logs = Path(tempfile.mkdtemp(prefix=f"logs-{label}-", dir=work))
    processes: dict[str, subprocess.Popen] = {}
    try:
        with Mailbox() as mailbox:
            run = uuid.uuid4().hex[:8]
            email = f"buyer-{run}@example.com"
            env = user_env(bin_dir, {
                "ENCORE_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}",
                "ENCORE_BROKER_URL": broker_url,
                "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{mailbox.port}?from=shop@example.com&to={{email}}",
                "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            })
            log(f"[{label}] `encore check`")
            check = subprocess.run(["encore", "check"], cwd=folder, env=env, capture_output=True, text=True,
                                   timeout=120)
            print(check.stdout + check.stderr, end="", flush=True)
            if check.returncode != 0:
                raise SystemExit(f"FAILED: [{label}] encore check exited {check.returncode}")
            processes = start_procfile(folder, env, logs)
            # Each process must stay up: give them time to import, connect and migrate.
            wait_until(f"[{label}] worker ready",
                       lambda: check_alive(processes, logs) or " ready." in (logs / "worker.log").read_text(),
                       PROCESS_START_SECONDS)
            if "beat" in processes:
                wait_until(f"[{label}] beat sending its first periodic task",
                           lambda: check_alive(processes, logs) or "Sending due task" in (logs / "beat.log").read_text(),
                           PROCESS_START_SECONDS)
            if "web" in processes:
                port = web_port(procfile_processes()["web"])
                wait_until(f"[{label}] web answering 200 on /healthz",
                           lambda: check_alive(processes, logs) or healthz(port) == 200, PROCESS_START_SECONDS)
            log(f"[{label}] emitting one order")
            emit = subprocess.run(["encore", "emit", "-"], input=order_line(run, email), cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=120)
            if emit.returncode != 0 or "accepted 1, rejected 0" not in emit.stdout:
                raise SystemExit(f"FAILED: [{label}] encore emit: {emit.stdout}{emit.stderr}")
            wait_until(f"[{label}] the coupon email to arrive",
                       lambda: check_alive(processes, logs) or email in mailbox.recipients, EMAIL_WAIT_SECONDS)
            check_alive(processes, logs)
            if list(folder.iterdir()):
                raise SystemExit(f"FAILED: [{label}] the production layout wrote into its folder: "
                                 f"{[p.name for p in folder.iterdir()]}")
            log(f"[{label}] OK: every Procfile process stayed up and the email arrived")
    finally:
        stop(processes)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run_demo(bin_dir: Path, work: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="encore-demo-", dir=work))
    env = user_env(bin_dir, {})
    log("`encore demo` on embedded defaults in an empty folder")
    demo = subprocess.run(["encore", "demo"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    if demo.returncode != 0:
        raise SystemExit(f"FAILED: encore demo exited {demo.returncode}:\n{demo.stdout[-3000:]}{demo.stderr[-3000:]}")
    status = subprocess.run(["encore", "status", "--json"], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    sent = json.loads(status.stdout)["deliveries"]["sent"]
    if sent < 1:
        raise SystemExit(f"FAILED: the demo sent nothing: {status.stdout}")
    log(f"demo OK: {sent} deliveries sent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--skip-rabbit", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="encore-smoke-"))
    try:
        bin_dir = build_venv(work)
        wheel_procfile(bin_dir, work)
        import_every_module(bin_dir, work)
        run_production(bin_dir, work, REDIS_URL, "redis")
        if not args.skip_rabbit:
            run_production(bin_dir, work, RABBIT_URL, "rabbitmq")
        run_demo(bin_dir, work)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)])
    log("production smoke passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
