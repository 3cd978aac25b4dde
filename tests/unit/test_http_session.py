"""channels.http_headers' slot session sends what a plain requests.Session sends.

It reads the environment once instead of per request; these tests compare what
reaches the transport (verify, proxies, auth) with a plain Session's, for the
environments that change it. No network: a recording transport answers.
"""

from __future__ import annotations

import os

import pytest
import requests
from requests.adapters import HTTPAdapter

from channels.http_headers import new_keep_alive_session


class RecordingTransport(HTTPAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.sent.append((request.url, request.headers.get("Authorization"), verify, cert, dict(proxies or {})))
        response = requests.Response()
        response.status_code = 200
        response.request = request
        response._content = b"{}"
        return response


def transported(session: requests.Session, **kwargs) -> tuple:
    transport = RecordingTransport()
    session.mount("https://", transport)
    session.mount("http://", transport)
    session.request("POST", "https://api.example.com/v1/send", data=b"{}", **kwargs)
    return transport.sent[0]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"},
        {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"},
        {"HTTPS_PROXY": "http://proxy.example.com:3128"},
        {"HTTPS_PROXY": "http://proxy.example.com:3128", "NO_PROXY": "api.example.com"},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem", "http_proxy": "http://proxy:3128"},
        {"NETRC": "netrc"},
    ],
)
@pytest.mark.parametrize("verify", [True, False, None, "/etc/ssl/own.pem"])
def test_the_slot_session_sends_what_a_plain_session_sends(
    clean_environment: pytest.MonkeyPatch, tmp_path, environment: dict[str, str], verify
) -> None:
    # Given a process environment (proxies, CA bundle, netrc credentials)
    for name, value in environment.items():
        if name == "NETRC":
            value = str(tmp_path / value)
            (tmp_path / "netrc").write_text("machine api.example.com login shop password s3cret\n")
        clean_environment.setenv(name, value)
    kwargs = {} if verify is None else {"verify": verify}
    # When a plugin's request goes through the slot session and through a plain one
    ours = transported(new_keep_alive_session(), **kwargs)
    plain = transported(requests.Session(), **kwargs)
    # Then the transport gets the same URL, credentials, verification and proxies
    assert ours == plain
