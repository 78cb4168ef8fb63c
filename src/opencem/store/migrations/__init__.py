"""Alembic's environment and the store's migrations (``versions/``), run by :mod:`..migrate`."""
