"""The database: SQLAlchemy 2 tables, sessions and Alembic migrations (SQLite or PostgreSQL)."""
