"""Connection data packages: one zip a user imports to connect to this server over TLS.

What the clients expect (gathered from TAK Server's documented package, OTS, taky, and the
issues where packages failed):

ATAK / WinTAK (``NAME-atak.zip``)
    ``MANIFEST/manifest.xml`` (``MissionPackageManifest version="2"``: ``uid``, ``name``,
    ``onReceiveImport``, ``onReceiveDelete`` and one ``<Content ignore="false"
    zipEntry=..>`` per file) and, under ``certs/``, a ``.pref`` plus the two ``.p12``. The
    ``.pref`` holds ``cot_streams`` with ``connectString0 = HOST:8089:ssl``. Certificate
    locations are written twice: per connection (``caLocation0``, ``certificateLocation0``,
    ``caPassword0``, ``clientPassword0`` in ``cot_streams``) because ATAK's
    ``PreferenceControl`` reads those into the connection's own certificate store
    (qrtak#238; OTS#360: without them the certificates are lost after a restart), and
    globally in ``com.atakmap.app_preferences`` as in TAK Server's own packages, which
    WinTAK and older ATAK read. Paths are relative (``cert/<file>``), never absolute
    ``/storage/emulated/0/...`` paths (OTS#360).

iTAK (``NAME-itak.zip``)
    No folders and no manifest: ``config.pref`` and the two ``.p12`` side by side at the
    root (taky#66, OTS's ``_CONFIG_iTAK.zip``), global keys only, still ``cert/<file>``
    paths, and no ``displayServerConnectionWidget`` (taky#66).

The truststore's file name carries the CA's fingerprint: WinTAK keeps trust stores by file
name and mixes up two servers' ``server.p12`` (taky#39).
"""

from __future__ import annotations

import io
import ipaddress
import uuid
import zipfile
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from otszmq.errors import PkiError

DEFAULT_PORT = 8089
PREF_HEADER = b"<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n"
MANIFEST_HEADER = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_JAVA = {str: "class java.lang.String", int: "class java.lang.Integer",
         bool: "class java.lang.Boolean"}


@dataclass(frozen=True)
class ConnectionPackage:
    """Everything a package holds; both ``.p12`` files are locked by ``password``."""

    host: str
    port: int
    user: str
    client_p12: bytes
    truststore_p12: bytes
    truststore_name: str
    password: str

    @property
    def client_p12_name(self) -> str:
        return f"{self.user}.p12"


def connect_string(host: str, port: int = DEFAULT_PORT) -> str:
    """``HOST:PORT:ssl``, the form of every TAK client's server list."""
    if not host or any(c in host for c in ":/ \t\n"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise PkiError(f"host {host!r} cannot be put in a connection string") from None
        # The clients split the string on ':' and have no bracket syntax.
        raise PkiError(f"host {host!r}: TAK clients cannot connect to an IPv6 literal; "
                       "use a DNS name")
    if not 0 < port < 65536:
        raise PkiError(f"port {port}: must be 1-65535")
    return f"{host}:{port}:ssl"


def preferences(package: ConnectionPackage, *, itak: bool) -> bytes:
    """The ``.pref`` document: one server connection and where its certificates are."""
    truststore = f"cert/{package.truststore_name}"
    client = f"cert/{package.client_p12_name}"
    stream: list[tuple[str, object]] = [
        ("count", 1),
        ("description0", f"otszmq {package.host}"),
        ("enabled0", True),
        ("connectString0", connect_string(package.host, package.port)),
    ]
    app: list[tuple[str, object]] = [
        ("caLocation", truststore),
        ("caPassword", package.password),
        ("clientPassword", package.password),
        ("certificateLocation", client),
    ]
    if not itak:
        stream += [
            ("caLocation0", truststore),
            ("caPassword0", package.password),
            ("clientPassword0", package.password),
            ("certificateLocation0", client),
        ]
        app.insert(0, ("displayServerConnectionWidget", True))
    root = ET.Element("preferences")
    for name, entries in (("cot_streams", stream), ("com.atakmap.app_preferences", app)):
        section = ET.SubElement(root, "preference", version="1", name=name)
        for key, value in entries:
            entry = ET.SubElement(section, "entry", key=key)
            entry.set("class", _JAVA[type(value)])
            entry.text = str(value).lower() if isinstance(value, bool) else str(value)
    ET.indent(root)
    return PREF_HEADER + ET.tostring(root, encoding="unicode").encode() + b"\n"


def manifest(uid: str, name: str, entries: list[str]) -> bytes:
    """``MANIFEST/manifest.xml`` listing ``entries`` (zip paths)."""
    root = ET.Element("MissionPackageManifest", version="2")
    configuration = ET.SubElement(root, "Configuration")
    for key, value in (("uid", uid), ("name", name), ("onReceiveImport", "true"),
                       # The package carries passwords: do not leave it lying on the device.
                       ("onReceiveDelete", "true")):
        ET.SubElement(configuration, "Parameter", name=key, value=value)
    contents = ET.SubElement(root, "Contents")
    for entry in entries:
        ET.SubElement(contents, "Content", ignore="false", zipEntry=entry)
    ET.indent(root)
    return MANIFEST_HEADER + ET.tostring(root, encoding="unicode").encode() + b"\n"


def atak_package(package: ConnectionPackage) -> bytes:
    """The ATAK / WinTAK zip: a manifest, and the ``.pref`` and ``.p12`` files in ``certs/``."""
    files = {
        "certs/preference.pref": preferences(package, itak=False),
        f"certs/{package.truststore_name}": package.truststore_p12,
        f"certs/{package.client_p12_name}": package.client_p12,
    }
    name = f"otszmq-{package.host}-{package.user}"
    files["MANIFEST/manifest.xml"] = manifest(str(uuid.uuid4()), name, list(files))
    return _zip(files)


def itak_package(package: ConnectionPackage) -> bytes:
    """The iTAK zip: ``config.pref`` and the two ``.p12`` at the root, no manifest."""
    return _zip({
        "config.pref": preferences(package, itak=True),
        package.truststore_name: package.truststore_p12,
        package.client_p12_name: package.client_p12,
    })


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
