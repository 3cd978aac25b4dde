"""A new user's first minutes: every command in an empty folder, and `encore check`.

The production smoke (`tests/smoke/production_smoke.py`, run by CI) installs the
wheel in a new venv; these tests cover the same promises faster, from the checkout."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.sinks import SmtpSink
from tests.e2e.test_cli import encore
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["deliveries", "--json"], ["dead-letters"],
                                     ["check"]])
def test_every_command_starts_in_an_empty_folder(tmp_path, command):
    # Given a new, empty folder and no settings
    # When a command runs there
    result = encore(*command, cwd=tmp_path)
    # Then it succeeds without a traceback, creating the data folder it needs
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "var").is_dir()


@pytest.mark.parametrize("command", [["status"], ["worker"], ["beat"], ["check"]])
def test_an_unwritable_data_folder_is_a_clear_error_naming_the_setting(tmp_path, command):
    # Given a data folder that cannot be created (a file stands where its parent should be)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    # When a command needs it
    result = encore(*command, cwd=tmp_path, env={"ENCORE_DATA_DIR": str(blocker / "var")}, timeout=60)
    # Then it stops with a message naming ENCORE_DATA_DIR, not a traceback
    assert result.returncode != 0
    assert "ENCORE_DATA_DIR" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_reports_each_part_and_fails_on_a_broken_channel_and_broker(tmp_path):
    # Given a broker nobody listens on and a channel template without its placeholder
    env = {"ENCORE_BROKER_URL": "redis://127.0.0.1:1/0", "ENCORE_CHANNEL_SMS": "json://127.0.0.1:9/sms"}
    # When the operator runs `encore check`
    result = encore("check", cwd=tmp_path, env=env, timeout=120)
    # Then each part has its own line, the broken ones say why, and the exit code is 1
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith("channel ") else ""): line
             for line in result.stdout.splitlines() if line.strip()}
    assert " ok " in lines["database"] and "sqlite" in lines["database"]
    assert "ERROR" in lines["broker"]
    assert "ERROR" in lines["channel sms"] and "ENCORE_CHANNEL_SMS" in lines["channel sms"]
    assert "off" in lines["channel email"]
    assert "warn" in lines["serve"] and "ENCORE_WEBHOOK_SECRET" in lines["serve"]  # serve would refuse to start


def test_check_reports_the_twilio_token_as_set_or_a_warning_and_never_shows_it(tmp_path):
    token = "0123456789abcdef0123456789abcdef"
    # Given a fresh folder without the token: a warning, and `encore check` still passes
    result = encore("check", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("twilio inbound")]
    assert " warn " in line and "ENCORE_TWILIO_AUTH_TOKEN is not set" in line and "401" in line
    # When the operator sets it
    result = encore("check", cwd=tmp_path, env={"ENCORE_TWILIO_AUTH_TOKEN": token}, timeout=120)
    # Then the line says it is set, and the token is nowhere in the output
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("twilio inbound")]
    assert " ok " in line and "ENCORE_TWILIO_AUTH_TOKEN set" in line
    assert token not in result.stdout + result.stderr


@pytest.mark.services
def test_check_passes_against_postgresql_and_redis_and_creates_no_local_folder(tmp_path, redis_url, postgres_url):
    # Given the production layout: PostgreSQL, Redis, one email channel on a relay that checks logins
    with SmtpSink(credentials=("shop", "secret-pass")) as relay:
        env = {"ENCORE_DATABASE_URL": postgres_url, "ENCORE_BROKER_URL": redis_url,
               "ENCORE_CHANNEL_EMAIL": f"mailto://shop:secret-pass@127.0.0.1:{relay.port}"
                                       "?from=shop@example.com&to={email}"}
        # When the operator runs `encore check` in an empty folder
        result = encore("check", cwd=tmp_path, env=env, timeout=120)
        # Then every part is usable, no password is printed, and nothing was written locally
        assert result.returncode == 0, result.stdout + result.stderr
        assert "postgresql" in result.stdout and "redis" in result.stdout
        assert "secret" not in result.stdout
        assert list(tmp_path.iterdir()) == []
        # ...and the email line is the relay's own answer to a login, with nothing sent
        [email] = [line for line in result.stdout.splitlines() if line.startswith("channel email")]
        assert " ok " in email and "answered as localhost; login accepted for shop; nothing sent" in email
        assert relay.sessions == 1 and relay.count == 0


def silent_port() -> tuple[socket.socket, int]:
    """A port that takes connections and never answers (a firewall that swallows them)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener, listener.getsockname()[1]


@pytest.mark.parametrize(
    ("credentials", "url", "says"),
    [
        ("shop:wrong-pass", "mailto://{credentials}@127.0.0.1:{port}?from=shop@example.com&to={{email}}",
         "auth failed for shop: 535 5.7.8 Authentication credentials invalid"),
        ("", "mailto://127.0.0.1:{closed}?from=shop@example.com&to={{email}}", "refused (nothing listens there)"),
        ("", "mailtos://127.0.0.1:{port}?from=shop@example.com&to={{email}}",
         "TLS failed: the server does not offer STARTTLS"),
        ("", "mailtos://127.0.0.1:{port}?mode=ssl&from=shop@example.com&to={{email}}",
         "TLS failed: WRONG_VERSION_NUMBER"),
        ("", "mailto://127.0.0.1:{silent}?cto=1&from=shop@example.com&to={{email}}",
         "timeout (no answer within 1 s)"),
    ],
    ids=["wrong password", "nothing listening", "no STARTTLS", "SSL on a plain port", "no answer"],
)
def test_check_says_why_the_smtp_server_cannot_be_used(tmp_path, credentials, url, says):
    from services.check import check_all

    listener, silent = silent_port()
    with SmtpSink(credentials=("shop", "secret-pass")) as relay, listener:
        template = url.format(credentials=credentials, port=relay.port, closed=free_port(), silent=silent)
        # When `encore check` runs with that email channel
        lines = {line.part: line for line in check_all(datetime.now(UTC), {"ENCORE_DATA_DIR": str(tmp_path / "var"),
                                                                           "ENCORE_CHANNEL_EMAIL": template})}
    # Then the email line is an error that says what failed, where, and no password
    email = lines["channel email"]
    assert not email.ok
    assert says in email.detail and "127.0.0.1:" in email.detail
    assert "pass" not in email.detail
    assert relay.count == 0


def test_readme_production_section_shows_the_procfile_as_it_is():
    # The smoke test runs the Procfile's lines; the README must tell users the same thing.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Production", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```procfile\n(.*?)```", section, re.S)
    assert blocks, "the Production section shows the Procfile in a ```procfile block"
    assert blocks[0] == (ROOT / "Procfile").read_text()


def test_encore_procfile_prints_the_repositorys_procfile(tmp_path):
    result = encore("procfile", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "Procfile").read_text()


def _tree(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_pip_install_leaves_the_source_tree_as_it_was_and_installs_the_procfile(tmp_path):
    # Given a clean copy of the sources (what git tracks, plus new files it does not ignore)
    source = tmp_path / "source"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    before = _tree(source)
    # When a user installs it with pip into a new venv (dependencies left out: only the build matters)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    # Then the source tree holds exactly what it held (no build/, no *.egg-info/)
    assert _tree(source) - before == set()
    # ...and the installed package carries the Procfile, as in the repository
    shipped = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.resources as r; "
                              "print(r.files('workers').joinpath('Procfile').read_text(), end='')"],
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert shipped == (ROOT / "Procfile").read_text()
