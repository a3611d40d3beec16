"""otszmq: a TAK server on a brokerless ZeroMQ pipeline."""

__version__ = "0.1.0"
