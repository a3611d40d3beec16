"""The HTTP API: the Marti routes TAK clients call and the admin REST API, a Falcon WSGI app
served by gunicorn (``create_app`` in :mod:`otszmq.api.app`, ``otszmq.api.wsgi:application``)."""
