"""The stores' database: one interface, two backends.

    base.py       the `Database` protocol, `Schema` (versioned migrations), `UniqueViolation`
    sqlite.py     the embedded default: one SQLite file per schema in the state directory
    postgres.py   PostgreSQL (`SIDECAR_DATABASE_URL`), shared by every replica

The stores (tools, agents, responses) write their SQL once, with `?` placeholders, in
the subset both dialects share; the backends run it.
"""

from sidecar.database.base import Database, Row, Schema, UniqueViolation

__all__ = ["Database", "Row", "Schema", "UniqueViolation"]
