"""Alembic's revisions of the SQL schema (shared/store/schema.py runs them)."""
