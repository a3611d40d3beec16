from setuptools import find_packages, setup

setup(
    name="otszmq",
    version="0.1.0",
    description="A TAK server on a brokerless ZeroMQ pipeline",
    python_requires=">=3.11",
    packages=find_packages(include=["otszmq", "otszmq.*"]),
    package_data={"otszmq": ["py.typed"]},
    install_requires=[
        "pyzmq>=26",
        "uvloop>=0.19",
        "lxml>=5",
        "msgpack>=1.0",
        # The CA (otszmq.pki): keys, certificates, CRLs and client-compatible PKCS#12
        # without openssl subprocesses; >=42 for not_valid_after_utc.
        "cryptography>=42",
        # Users' passwords (otszmq.users): argon2id, the password-hashing competition's winner,
        # through its reference bindings.
        "argon2-cffi>=23",
        # The store (otszmq.store): a small ORM that speaks SQLite and PostgreSQL alike and
        # does multi-row upserts; >=4.5 ships its own type stubs (mypy strict).
        "peewee>=4.5",
        # peewee's PostgreSQL driver; the binary wheel needs no libpq or compiler on the host.
        "psycopg2-binary>=2.9",
        # The HTTP API (otszmq.api): a WSGI framework with typed requests and multipart
        # parsing, served by gunicorn; 4 for its type hints.
        "falcon>=4",
        # <28: otszmq.api.listeners subclasses gunicorn 27's gthread worker (per-port TLS).
        "gunicorn>=27,<28",
        # /metrics in the Prometheus text format, from the reference client library.
        "prometheus-client>=0.20",
        # The RabbitMQ bridge (otszmq.bridge): asyncio AMQP 0-9-1 client, typed; 9 for
        # CONNECTION_EXCEPTIONS and the abc interfaces.
        "aio-pika>=9",
        # Meshtastic envelopes (otszmq.bridge.meshtastic): Google's protobuf runtime with our
        # own declaration of the few messages we need (schema.py says why not the GPL-3
        # `meshtastic` package); 5 for message_factory.GetMessageClass.
        "protobuf>=5",
        # TAK protocol v1 on the TLS port (otszmq.ingest.takproto_codec): only its generated
        # TakMessage classes (MIT, from ATAK's .proto files; needs nothing but protobuf).
        "takproto>=3",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "pytak>=7",
            "ruff>=0.6",
            "mypy>=1.10",
            "lxml-stubs",
            "msgpack-types",
            # The HTTP client of the API tests.
            "requests>=2.31",
            # The Meshtastic tests: an MQTT client playing the gateway; protobuf's type stubs.
            "paho-mqtt>=2",
            "types-protobuf",
        ],
    },
    entry_points={"console_scripts": ["otszmq = otszmq.cli:main"]},
)
