"""The service's MetaData is what Alembic autogenerate compares: a mirror table lacking a column
in the database comes out as the add_column a migration needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table

import ferryman as fm
from ferryman.stores import OFFSETS_TABLE, Database, Mirror


@dataclass
class Customer:
    id: int
    name: str
    email: str | None = None


customers = fm.EntityTopic("customers", Customer, key="id")


def test_autogenerate_sees_the_mirror_and_offsets_tables(database: Database) -> None:
    Mirror(database, customers)
    with database.begin() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), database.metadata)
    added = sorted(d[1].name for d in diff if d[0] == "add_table")
    assert added == ["customers", OFFSETS_TABLE]


def test_autogenerate_adds_the_column_a_new_model_field_needs(database: Database) -> None:
    mirror = Mirror(database, customers)
    # the database as the previous version of Customer (without email) left it
    old = MetaData()
    Table(
        "customers",
        old,
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in mirror.table.columns
            if c.name != "email"
        ),
    )
    old.create_all(database.engine)
    database.create_missing()
    with database.begin() as conn:
        context = MigrationContext.configure(conn)
        diff: list[Any] = compare_metadata(context, database.metadata)
        upgrade = produce_migrations(context, database.metadata).upgrade_ops
        assert upgrade is not None  # None only for a script with no upgrade section
        script = render_python_code(upgrade)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "customers", "email")]
    assert "op.add_column('customers', sa.Column('email', sa.Text(), nullable=True))" in script
