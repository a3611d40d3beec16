"""store stage: writes what the workers parsed into SQLite or PostgreSQL, in batches.

NOTE: nothing is imported here. Workers import :mod:`otszmq.store.records` on their hot path and
must not pay for peewee, which only the store stage loads.
"""
