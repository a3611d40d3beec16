"""``otszmq ca`` and ``otszmq cert`` as an admin runs them: real processes, real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.support import otszmq_command

PASSPHRASE = "component passphrase"
TIMEOUT = 60.0


def otszmq(*args: str, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTSZMQ_")}
    # stdin is not a terminal, so a missing passphrase fails instead of prompting.
    return subprocess.run(otszmq_command(*args), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=TIMEOUT,
                          env={**clean, **(env or {})}, cwd=cwd, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("otszmq ") and fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli") / "data"
    result = otszmq("ca", "init", "--data-dir", str(directory), "--key-size", "2048",
                    "--host", "tak.example.org", "--host", "127.0.0.1",
                    env={"OTSZMQ_CA_PASSPHRASE": PASSPHRASE})
    assert result.returncode == 0, result.stderr
    assert "CA passphrase" not in result.stdout  # the admin gave one: nothing to show
    return directory


def test_ca_init_generates_a_passphrase_and_refuses_to_overwrite(tmp_path):
    data = tmp_path / "data"
    first = otszmq("ca", "init", "--data-dir", str(data), "--key-size", "2048")
    assert first.returncode == 0, first.stderr
    passphrase = first.stdout.strip().splitlines()[-1].strip()
    assert len(passphrase) >= 32 and passphrase not in (data / "pki" / "ca.key").read_text()
    ca_pem = (data / "pki" / "ca.pem").read_bytes()

    again = otszmq("ca", "init", "--data-dir", str(data), "--key-size", "2048")
    one_line_error(again, "already exists")
    assert (data / "pki" / "ca.pem").read_bytes() == ca_pem

    forced = otszmq("ca", "init", "--data-dir", str(data), "--key-size", "2048", "--force",
                    "--passphrase", "another passphrase")
    assert forced.returncode == 0, forced.stderr
    assert (data / "pki" / "ca.pem").read_bytes() != ca_pem
    assert "CA passphrase" not in forced.stdout
    # The first CA sits aside, still opened by the passphrase printed for it.
    (aside,) = data.glob("pki.replaced-*")
    assert (aside / "ca.pem").read_bytes() == ca_pem
    serialization.load_pem_private_key((aside / "ca.key").read_bytes(), passphrase.encode())


def test_issue_writes_certificate_key_p12_packages_and_ca(data_dir, tmp_path):
    out = tmp_path / "out"
    result = otszmq("cert", "issue", "alice", "--data-dir", str(data_dir), "--out", str(out),
                    "--key-size", "2048", env={"OTSZMQ_CA_PASSPHRASE": PASSPHRASE})
    assert result.returncode == 0, result.stderr
    names = {"alice.pem", "alice.key", "alice.p12", "alice-atak.zip", "alice-itak.zip",
             "ca.pem"}
    assert {p.name for p in out.iterdir()} == names
    for secret in ("alice.key", "alice.p12", "alice-atak.zip", "alice-itak.zip"):
        assert (out / secret).stat().st_mode & 0o777 == 0o600
    password = re.search(r"\.p12 password .*: (\S+)", result.stdout)
    assert password, result.stdout
    key, cert, extra = pkcs12.load_key_and_certificates(
        (out / "alice.p12").read_bytes(), password.group(1).encode())
    ca_cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    assert cert is not None and key is not None and extra == [ca_cert]
    cert.verify_directly_issued_by(ca_cert)
    assert cert == x509.load_pem_x509_certificate((out / "alice.pem").read_bytes())
    with zipfile.ZipFile(out / "alice-atak.zip") as archive:
        assert "MANIFEST/manifest.xml" in archive.namelist()
        assert b"tak.example.org:8089:ssl" in archive.read("certs/preference.pref")
    with zipfile.ZipFile(out / "alice-itak.zip") as archive:
        assert b"tak.example.org:8089:ssl" in archive.read("config.pref")


def test_issue_with_given_password_host_and_port(data_dir, tmp_path):
    out = tmp_path / "out"
    result = otszmq("cert", "issue", "bob", "--data-dir", str(data_dir), "--out", str(out),
                    "--key-size", "2048", "--passphrase", PASSPHRASE, "--p12-password",
                    "given-pw", "--host", "10.1.2.3", "--port", "9089")
    assert result.returncode == 0, result.stderr
    assert "given-pw" not in result.stdout  # the admin knows it; do not print it
    pkcs12.load_key_and_certificates((out / "bob.p12").read_bytes(), b"given-pw")
    with zipfile.ZipFile(out / "bob-itak.zip") as archive:
        assert b"10.1.2.3:9089:ssl" in archive.read("config.pref")


@pytest.mark.parametrize(("name", "passphrase", "fragment"), [
    ("carol", "not the passphrase", "wrong CA passphrase"),
    ("../carol", PASSPHRASE, "user name '../carol' is not allowed"),
    ("", PASSPHRASE, "user name is empty"),
    ("carol", "", "CA key is encrypted"),
])
def test_issue_errors_write_nothing(data_dir, tmp_path, name, passphrase, fragment):
    index = (data_dir / "pki" / "index.json").read_bytes()
    out = tmp_path / "out"
    result = otszmq("cert", "issue", name, "--data-dir", str(data_dir), "--out", str(out),
                    "--key-size", "2048", env={"OTSZMQ_CA_PASSPHRASE": passphrase})
    one_line_error(result, fragment)
    assert not out.exists()
    assert (data_dir / "pki" / "index.json").read_bytes() == index


def test_missing_ca_is_a_clear_error(tmp_path):
    for argv in (["cert", "issue", "x", "--out", str(tmp_path / "o")], ["cert", "list"],
                 ["cert", "revoke", "x"]):
        result = otszmq(*argv, "--data-dir", str(tmp_path / "none"),
                        env={"OTSZMQ_CA_PASSPHRASE": PASSPHRASE})
        one_line_error(result, "no CA in")
    assert not (tmp_path / "o").exists()


def test_revoke_then_list(data_dir, tmp_path):
    env = {"OTSZMQ_CA_PASSPHRASE": PASSPHRASE}
    for _ in range(2):
        issued = otszmq("cert", "issue", "dave", "--data-dir", str(data_dir), "--out",
                        str(tmp_path / "out"), "--key-size", "2048", env=env)
        assert issued.returncode == 0, issued.stderr

    revoked = otszmq("cert", "revoke", "dave", "--data-dir", str(data_dir), "--reason",
                     "affiliation_changed", env=env)
    assert revoked.returncode == 0, revoked.stderr
    serials = re.findall(r"revoked ([0-9A-F]+) \(dave\)", revoked.stdout)
    assert len(serials) == 2

    listing = otszmq("cert", "list", "--data-dir", str(data_dir), "--json")
    rows = [row for row in json.loads(listing.stdout) if row["cn"] == "dave"]
    assert {row["serial"] for row in rows} == set(serials)
    assert {(row["status"], row["reason"]) for row in rows} == {
        ("revoked", "affiliation_changed")}
    crl = x509.load_pem_x509_crl((data_dir / "pki" / "crl.pem").read_bytes())
    for serial in serials:
        assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None

    table = otszmq("cert", "list", "--data-dir", str(data_dir)).stdout
    assert re.search(rf"{serials[0]}\s+dave\s+client\s+revoked", table)

    again = otszmq("cert", "revoke", "dave", "--data-dir", str(data_dir), env=env)
    one_line_error(again, "no unrevoked certificate for user 'dave'")
    both = otszmq("cert", "revoke", "dave", "--serial", serials[0], "--data-dir",
                  str(data_dir), env=env)
    one_line_error(both, "either a user NAME or --serial")


def test_revoke_by_serial(data_dir, tmp_path):
    env = {"OTSZMQ_CA_PASSPHRASE": PASSPHRASE}
    issued = otszmq("cert", "issue", "erin", "--data-dir", str(data_dir), "--out",
                    str(tmp_path / "out"), "--key-size", "2048", env=env)
    serial = re.search(r"issued certificate ([0-9A-F]+)", issued.stdout)
    assert serial, issued.stdout
    result = otszmq("cert", "revoke", "--serial", serial.group(1), "--data-dir",
                    str(data_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert f"revoked {serial.group(1)} (erin)" in result.stdout


def test_stored_passphrase_lets_the_server_sign_unattended(tmp_path):
    data = tmp_path / "data"
    init = otszmq("ca", "init", "--data-dir", str(data), "--key-size", "2048",
                  "--store-passphrase")
    assert init.returncode == 0, init.stderr
    assert (data / "pki" / "ca.passphrase").stat().st_mode & 0o777 == 0o600
    issued = otszmq("cert", "issue", "frank", "--data-dir", str(data), "--out",
                    str(tmp_path / "out"), "--key-size", "2048")
    assert issued.returncode == 0, issued.stderr


def test_data_dir_comes_from_the_environment_like_the_other_commands(tmp_path):
    data = tmp_path / "envdata"
    result = otszmq("ca", "init", "--key-size", "2048", "--passphrase", PASSPHRASE,
                    env={"OTSZMQ_DATA_DIR": str(data)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (data / "pki" / "ca.pem").is_file()


def test_the_cli_does_not_import_cryptography_for_other_commands():
    probe = "import sys, otszmq.cli; otszmq.cli._parser(); print('cryptography' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=TIMEOUT, check=True)
    assert result.stdout.strip() == "False"
