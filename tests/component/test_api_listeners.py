"""The API's TLS listeners on a real CA directory: which context each port gets, and the
revocation check that also covers connections kept alive across a revocation."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from otszmq.api.listeners import Listener, TlsListeners
from otszmq.errors import PkiError
from otszmq.pki.ca import CertificateAuthority, init_ca
from otszmq.pki.files import PkiPaths

PASSPHRASE = "listener-test-passphrase"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    paths = PkiPaths(tmp_path_factory.mktemp("pki") / "pki")
    return init_ca(paths, PASSPHRASE, ["127.0.0.1"], key_size=2048)


def test_each_port_gets_its_context(authority: CertificateAuthority) -> None:
    listeners = TlsListeners(authority.paths.root, 9443, 9446, 5.0)
    https, enroll = listeners.context_for(9443), listeners.context_for(9446)
    assert https is not None and https.verify_mode == ssl.CERT_REQUIRED
    assert https.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert enroll is not None and enroll.verify_mode == ssl.CERT_NONE
    assert listeners.context_for(8080) is None
    assert listeners.listener_of({}) == (Listener.PLAIN, None)
    assert listeners.listener_of({"gunicorn.socket": object()}) == (Listener.PLAIN, None)

    only_enroll = TlsListeners(authority.paths.root, 0, 9446, 5.0)
    assert only_enroll.context_for(9443) is None and only_enroll.client_certs is None


def test_revocation_is_seen_without_a_restart(authority: CertificateAuthority) -> None:
    listeners = TlsListeners(authority.paths.root, 9443, 0, 5.0)
    issued = authority.issue_client("alice", key_size=2048)
    serial = issued.record.serial
    assert not listeners.is_revoked(serial)
    authority.revoke_serial(serial)
    assert listeners.is_revoked(serial)
    assert not listeners.is_revoked(serial + 1)


def test_no_ca_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="no CA"):
        TlsListeners(tmp_path / "pki", 9443, 9446, 5.0)
