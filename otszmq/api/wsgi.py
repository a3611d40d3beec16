"""The module gunicorn loads: ``gunicorn otszmq.api.wsgi:application``.

NOTE: the one API module with import-time effects, on purpose (it is an entry point, like
``otszmq api``): importing it reads ``OTSZMQ_*`` from the environment (and ``OTSZMQ_CONFIG``'s
TOML file), opens the database and runs schema migrations. Run with ``--preload`` when there
is more than one worker, so the migrations run once, before the fork.
"""

from __future__ import annotations

from otszmq.api.main import app_from_settings
from otszmq.config import load_settings
from otszmq.runtime import setup_logging

_settings = load_settings({})
setup_logging(_settings, "api")
application = app_from_settings(_settings)
