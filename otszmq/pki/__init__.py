"""otszmq's own certificate authority for the mutual-TLS ports.

Everything lives under ``<data_dir>/pki/`` (see :class:`otszmq.pki.files.PkiPaths`):

- ``ca.pem`` / ``ca.key``: the CA certificate and its key, the key encrypted with the
  admin's passphrase (there is no default passphrase);
- ``ca.passphrase`` (optional, 0600): that passphrase, only if the admin chose
  ``ca init --store-passphrase`` so that ``serve`` can sign enrollment requests unattended;
- ``server.pem`` / ``server.key``: the server certificate and its *unencrypted* key (0600),
  so that the server starts without a human;
- ``crl.pem``: the certificate revocation list, re-signed on every revocation;
- ``index.json``: every certificate issued, with its revocation state;
- ``issued/<SERIAL>.pem``: a copy of every certificate issued, for audits.

Modules: ``files`` (paths, atomic writes, the lock), ``index`` (the JSON index), ``ca``
(create, issue, sign, revoke, CRL), ``pkcs12`` (client-compatible PKCS#12), ``tls``
(``ssl`` contexts for the servers), ``datapackage`` (ATAK and iTAK zips), ``commands``
(the ``otszmq ca`` / ``otszmq cert`` command line).

NOTE: this package imports nothing on purpose: ``cryptography`` costs ~150 ms to import
and the other sub-commands must not pay for it.
"""
