"""Persistence: SQLAlchemy 2 models, the engine, the queries the services need, migrations."""
