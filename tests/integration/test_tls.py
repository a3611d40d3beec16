"""Mutual TLS on the CoT port: certificates from `otszmq cert issue`, real clients.

pytak and Python's ssl speak TLS with issued certificates; `openssl s_client` tries
without one, with a revoked one and with a foreign CA's; revocation while connected.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path

import pytak
import pytest

from tests.support import (
    CotClient,
    Node,
    add_user,
    marker_event,
    otszmq_command,
    running_node,
    sa_event,
)
from tests.support import stream_login as login

pytestmark = pytest.mark.integration


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("tls") / "data", workers=1, tls=True) as running:
        yield running


def issue(node: Node, name: str, out: Path, data_dir: Path | None = None,
          passphrase: str | None = None) -> Path:
    """`otszmq cert issue` as an admin would run it; returns the output directory.

    The node's own CA needs no passphrase: `serve` stored it when it created the CA.
    """
    extra = ["--passphrase", passphrase] if passphrase else []
    if data_dir is None:
        add_user(node, name)
    subprocess.run(
        otszmq_command("cert", "issue", name, "--data-dir", str(data_dir or node.data_dir),
                       "--out", str(out), "--key-size", "2048", "--p12-password", "atak-test",
                       *extra),
        check=True, capture_output=True, timeout=60,
    )
    return out


def client_context(certs: Path, name: str, ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca or certs / "ca.pem"))
    context.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
    return context


def barrier(sender: CotClient, receiver: CotClient) -> bytes:
    needle = f"barrier-{tag()}"
    sender.send(marker_event(f"m-{tag()}", remarks=needle))
    return b"".join(receiver.recv_until(needle.encode()))


def test_tls_and_tcp_clients_see_each_other(node: Node, tmp_path: Path) -> None:
    certs = issue(node, "alice", tmp_path / "alice")
    alice = CotClient(node.tls_port, tls=client_context(certs, "alice"))
    bob = node.connect()
    with alice, bob:
        alice.send(sa_event("uid-alice", "ALICE"))
        assert b'uid="uid-alice"' in bob.recv_until(b"ALICE")[-1]
        bob.send(sa_event("uid-bob", "BOB"))
        assert b'uid="uid-bob"' in alice.recv_until(b'"BOB"')[-1]


async def pytak_exchange(node: Node, certs: Path, name: str) -> bytes:
    parser = ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # pytak's keys are upper-case
    parser["tls"] = {
        "COT_URL": f"tls://127.0.0.1:{node.tls_port}",
        "PYTAK_TLS_CLIENT_CERT": str(certs / f"{name}.pem"),
        "PYTAK_TLS_CLIENT_KEY": str(certs / f"{name}.key"),
        "PYTAK_TLS_CLIENT_CAFILE": str(certs / "ca.pem"),
    }
    reader, writer = await pytak.protocol_factory(parser["tls"])
    listener = node.connect()
    try:
        run = tag()
        writer.write(pytak.gen_cot(lat=5, lon=6, uid=f"pytak-{run}", cot_type="a-f-G-U-C",
                                   callsign=f"PYTAK-{run}"))
        await writer.drain()
        received = await asyncio.to_thread(listener.recv_until, f"pytak-{run}".encode())
        return received[-1]
    finally:
        listener.close()
        writer.close()
        del reader


def test_pytak_over_tls_with_an_issued_certificate(node: Node, tmp_path: Path) -> None:
    certs = issue(node, "carol", tmp_path / "carol")
    event = asyncio.run(pytak_exchange(node, certs, "carol"))
    assert b'type="a-f-G-U-C"' in event


def openssl_refused(node: Node, ca: Path, cert: Path | None, key: Path | None) -> bool:
    """Send an SA through `openssl s_client`; True if the server refused the client.

    Refused means: s_client reports a failed handshake or an alert, and the event it
    tried to send never reaches a connected client.
    """
    run = tag()
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{node.tls_port}", "-CAfile", str(ca),
            "-quiet", "-verify_return_error"]
    if cert and key:
        argv += ["-cert", str(cert), "-key", str(key)]
    watcher = node.connect()
    other = node.connect()
    with watcher, other:
        result = subprocess.run(argv, input=sa_event(f"os-{run}", f"OS-{run}"),
                                capture_output=True, timeout=30, check=False)
        seen = barrier(other, watcher)
        output = result.stdout + result.stderr
        return f"os-{run}".encode() not in seen and (
            result.returncode != 0 or b"alert" in output.lower() or b"error" in output.lower()
        )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl client is not installed")
def test_openssl_without_revoked_and_foreign_certificates_is_refused(
    node: Node, tmp_path: Path
) -> None:
    ca = node.data_dir / "pki" / "ca.pem"
    assert openssl_refused(node, ca, None, None)

    revoked = issue(node, "mallory", tmp_path / "mallory")
    subprocess.run(otszmq_command("cert", "revoke", "mallory", "--data-dir", str(node.data_dir)),
                   check=True, capture_output=True, timeout=60)
    assert openssl_refused(node, ca, revoked / "mallory.pem", revoked / "mallory.key")

    foreign_dir = tmp_path / "foreign"
    subprocess.run(otszmq_command("ca", "init", "--data-dir", str(foreign_dir), "--key-size",
                                  "2048", "--passphrase", "foreign-passphrase-123"),
                   check=True, capture_output=True, timeout=60)
    foreign = issue(node, "eve", tmp_path / "eve", data_dir=foreign_dir,
                    passphrase="foreign-passphrase-123")
    assert openssl_refused(node, ca, foreign / "eve.pem", foreign / "eve.key")

    # The server is unaffected: a good certificate still streams.
    good = issue(node, "dave", tmp_path / "dave")
    with CotClient(node.tls_port, tls=client_context(good, "dave")) as dave, node.connect() as tcp:
        dave.send(sa_event("uid-dave", "DAVE"))
        assert b"DAVE" in tcp.recv_until(b"DAVE")[-1]


def test_revoking_a_connected_user_closes_the_connection(node: Node, tmp_path: Path) -> None:
    certs = issue(node, "trent", tmp_path / "trent")
    trent = CotClient(node.tls_port, tls=client_context(certs, "trent"))
    with trent, node.connect() as tcp:
        barrier(trent, tcp)
        subprocess.run(otszmq_command("cert", "revoke", "trent", "--data-dir",
                                      str(node.data_dir)),
                       check=True, capture_output=True, timeout=60)
        assert trent.is_closed_by_server(timeout=15)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            again = CotClient(node.tls_port, tls=client_context(certs, "trent"))
            again.send(sa_event("uid-trent", "TRENT"))
            again.recv_event(timeout=5)


def test_a_certificate_without_a_user_is_refused(node: Node, tmp_path: Path) -> None:
    # Issued by our CA, but no `otszmq user add ghost`: the CN maps to no user.
    certs = issue(node, "ghost", tmp_path / "ghost", data_dir=node.data_dir)
    ghost = CotClient(node.tls_port, tls=client_context(certs, "ghost"))
    with ghost:
        assert ghost.is_closed_by_server(timeout=15)


def test_channels_separate_users_and_join_those_in_both(node: Node, tmp_path: Path) -> None:
    add_user(node, "red1", "Red")
    add_user(node, "blue1", "Blue")
    add_user(node, "purple1", "Red", "Blue")
    clients = {}
    for name in ("red1", "blue1", "purple1"):
        certs = issue(node, name, tmp_path / name, data_dir=node.data_dir)
        clients[name] = CotClient(node.tls_port, tls=client_context(certs, name))
    red, blue, purple = clients["red1"], clients["blue1"], clients["purple1"]
    with red, blue, purple:
        run = tag()
        for name, client in clients.items():
            client.send(marker_event(f"{name}-{run}", remarks=f"from-{name}-{run}"))
        # purple reads Red and Blue: it sees both.
        purple.recv_all([f"from-red1-{run}".encode(), f"from-blue1-{run}".encode()])
        # red and blue each see purple's event (it writes to both)...
        seen_by_red = b"".join(red.recv_until(f"from-purple1-{run}".encode()))
        seen_by_blue = b"".join(blue.recv_until(f"from-purple1-{run}".encode()))
        # ...and never each other's. Barrier: purple writes again, after both were routed.
        purple.send(marker_event(f"p2-{run}", remarks=f"again-{run}"))
        seen_by_red += b"".join(red.recv_until(f"again-{run}".encode()))
        seen_by_blue += b"".join(blue.recv_until(f"again-{run}".encode()))
        assert f"from-blue1-{run}".encode() not in seen_by_red
        assert f"from-red1-{run}".encode() not in seen_by_blue


def test_stream_login_on_plain_tcp_puts_the_client_in_its_channels(node: Node) -> None:
    add_user(node, "red2", "Red2", password="red-pass")
    add_user(node, "blue2", "Blue2", password="blue-pass")
    clients = [node.connect() for _ in range(6)]
    red, blue, anon, red_peer, blue_peer, anon_peer = clients
    try:
        for client, user in ((red, "red2"), (red_peer, "red2"), (blue, "blue2"),
                             (blue_peer, "blue2")):
            login(client, user, f"{user[:-1]}-pass")
        run = tag()
        # Every login has completed once each member has received an event of its channel
        # from the other (only a reader of the channel gets it, live or replayed).
        for one, other in ((red, red_peer), (red_peer, red), (blue, blue_peer),
                           (blue_peer, blue)):
            needle = f"ready-{tag()}"
            other.send(marker_event(f"r-{needle}", remarks=needle))
            one.recv_until(needle.encode())
        red.send(marker_event(f"r-{run}", remarks=f"red-{run}"))
        blue.send(marker_event(f"b-{run}", remarks=f"blue-{run}"))
        anon.send(marker_event(f"a-{run}", remarks=f"anon-{run}"))
        # Each sees only its own channel. Barrier: a later event from a member of the same
        # channel, sent after the peer saw the three events above were routed.
        red_peer.recv_until(f"red-{run}".encode())
        blue_peer.recv_until(f"blue-{run}".encode())
        anon_peer.recv_until(f"anon-{run}".encode())
        for peer, client, name in ((red_peer, red, "red"), (blue_peer, blue, "blue"),
                                   (anon_peer, anon, "anon")):
            peer.send(marker_event(f"{name}-b-{run}", remarks=f"{name}-barrier-{run}"))
            seen = b"".join(client.recv_until(f"{name}-barrier-{run}".encode()))
            others = {"red", "blue", "anon"} - {name}
            assert not any(f"{other}-{run}".encode() in seen for other in others), name
    finally:
        for client in clients:
            client.close()


def test_stream_login_with_a_wrong_password_closes_the_connection(node: Node) -> None:
    add_user(node, "green2", password="right")
    with node.connect() as client:
        login(client, "green2", "wrong")
        assert client.is_closed_by_server(timeout=15)
