"""The API under real gunicorn on a free loopback port: readiness, a data package uploaded over
HTTP and downloaded byte-identical, and a bounded SIGTERM shutdown. Also ``otszmq api``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.api_support import add_user_command, bearer, login
from tests.support import free_port, otszmq_command

pytestmark = pytest.mark.integration

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
POLL = 0.05  # seconds between readiness probes while the port refuses connections


def wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"API exited {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{base}/api/health", timeout=2).json() == {"status": "ok"}:
                return
        except requests.ConnectionError:
            time.sleep(POLL)  # not listening yet: the bounded readiness probe's poll
    raise AssertionError(f"API not healthy within {READY_TIMEOUT} s:\n{log.read_text()}")


@contextmanager
def running(argv: list[str], env: dict[str, str], base: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, base, log)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"API ignored SIGTERM:\n{log.read_text()}") from None
    assert code == 0, log.read_text()


def api_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTSZMQ_")}
    env["OTSZMQ_DATA_DIR"] = str(data_dir)
    return env


def upload_and_download(base: str) -> None:
    payload = os.urandom(300_000)
    sha = hashlib.sha256(payload).hexdigest()
    assert requests.get(f"{base}/Marti/sync/missionquery", params={"hash": sha},
                        timeout=10).status_code == 404
    result = requests.post(
        f"{base}/Marti/sync/missionupload",
        params={"hash": sha, "filename": "mission.zip", "creatorUid": "ANDROID-9"},
        files={"assetfile": ("mission.zip", payload, "application/zip")}, timeout=30)
    assert result.status_code == 200, result.text
    assert result.text == f"{base}/Marti/sync/content?hash={sha}"
    download = requests.get(result.text, timeout=30)
    assert download.status_code == 200
    assert download.content == payload
    assert requests.get(f"{base}/Marti/sync/missionquery", params={"hash": sha},
                        timeout=10).text == result.text


def gunicorn_argv(port: int) -> list[str]:
    """Plain gunicorn on the WSGI module, two workers, preloaded (migrations run once)."""
    return [sys.executable, "-m", "gunicorn", "otszmq.api.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--preload",
            "--graceful-timeout", "5"]


def test_gunicorn_serves_data_packages(tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    argv = gunicorn_argv(port)
    add_user_command(data_dir, "admin", admin=True)
    with running(argv, api_env(data_dir), base, tmp_path / "gunicorn.log"):
        upload_and_download(base)
        config = requests.get(f"{base}/Marti/api/version/config", timeout=10).json()
        assert config["data"]["api"] == "3"
        missing = requests.get(f"{base}/no/such/route", timeout=10)
        assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
        status = requests.get(f"{base}/api/status", params={"counters": "false"},
                              headers=login(base, "admin"), timeout=10).json()
        assert status["data_packages"] == 1
    assert len(list((data_dir / "packages").iterdir())) == 1


def test_otszmq_api_command(tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = otszmq_command("api", "--data-dir", str(tmp_path / "data"), "--bind", "127.0.0.1",
                          "--api-port", str(port), "--api-workers", "1",
                          # No CA in this data dir: the TLS ports need one.
                          "--https-port", "0", "--enroll-port", "0")
    with running(argv, api_env(tmp_path / "data"), base, tmp_path / "api.log"):
        upload_and_download(base)


def test_tokens_hold_across_workers_and_logout_reaches_them_all(tmp_path: Path):
    """A token issued by one gunicorn worker opens every worker; a logout closes them all."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    argv = gunicorn_argv(port)
    add_user_command(data_dir, "admin", admin=True)
    with running(argv, api_env(data_dir), base, tmp_path / "gunicorn.log"):
        assert requests.get(f"{base}/api/status", timeout=10).status_code == 401
        admin = login(base, "admin")
        created = requests.post(f"{base}/api/users", headers=admin, timeout=10, json={
            "username": "bravo", "password": "bravo password", "groups_out": ["Red"]})
        assert created.status_code == 201, created.text
        bravo = login(base, "bravo", "bravo password")
        # A new connection per request: the kernel spreads them over both workers.
        for _ in range(20):
            me = requests.get(f"{base}/api/me", headers=bravo, timeout=10)
            assert me.status_code == 200, me.text
            assert me.json()["groups_out"] == ["Red"]
            assert requests.get(f"{base}/api/users", headers=bravo,
                                timeout=10).status_code == 403
        assert requests.post(f"{base}/api/logout", headers=bravo, timeout=10).status_code == 200
        for _ in range(20):
            refused = requests.get(f"{base}/api/me", headers=bravo, timeout=10)
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = requests.post(f"{base}/api/login", timeout=10,
                              json={"username": "bravo", "password": "guess"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong user name or password"
        assert requests.get(f"{base}/api/me", headers=bearer("A" * 43),
                            timeout=10).status_code == 401
    assert "api login refused for 'bravo'" in (tmp_path / "gunicorn.log").read_text()
