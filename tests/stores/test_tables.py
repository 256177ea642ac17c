"""Tables made from topic models: column types from Avro, field mapping, user tables, and the
check of a table against the live database."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

import pydantic
import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    Time,
    Uuid,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import ferryman as fm
from ferryman.errors import ConfigError, MirrorSchemaError, SchemaError
from ferryman.schema import TIMESTAMP_MILLIS, DecimalSpec
from ferryman.stores import Database, Mirror, MirrorRecord, field_columns


class Tier(enum.Enum):
    GOLD = 1
    SILVER = 2


@dataclass
class Address:
    city: str
    zip: str


@dataclass
class Account:
    id: int
    name: str
    active: bool
    score: float
    avatar: bytes
    tier: Tier
    born: dt.date
    seen: dt.datetime
    seen_ms: Annotated[dt.datetime, TIMESTAMP_MILLIS]
    balance: Annotated[Decimal, DecimalSpec(12, 2)]
    token: uuid.UUID
    address: Address
    tags: list[str]
    attrs: dict[str, int]
    nickname: str | None = None
    either: int | str = 0
    notes: list[Address] = field(default_factory=list)


accounts = fm.EntityTopic("accounts.v1", Account, key="id")

EXPECTED_TYPES: dict[str, tuple[type, bool]] = {
    "id": (BigInteger, False),
    "name": (Text, False),
    "active": (Boolean, False),
    "score": (Double, False),
    "avatar": (LargeBinary, False),
    "tier": (Text, False),
    "born": (Date, False),
    "seen": (DateTime, False),
    "seen_ms": (DateTime, False),
    "balance": (Numeric, False),
    "token": (Uuid, False),
    "address": (JSON, False),
    "tags": (JSON, False),
    "attrs": (JSON, False),
    "nickname": (Text, True),
    "either": (JSON, False),
    "notes": (JSON, False),
}


def an_account(**changes: Any) -> Account:
    values: dict[str, Any] = {
        "id": 7,
        "name": "Ada",
        "active": True,
        "score": 0.5,
        "avatar": b"\x00\xff",
        "tier": Tier.GOLD,
        "born": dt.date(1815, 12, 10),
        "seen": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        "seen_ms": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        "balance": Decimal("1234.50"),
        "token": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "address": Address("London", "N1"),
        "tags": ["a", "b"],
        "attrs": {"x": 1},
        "nickname": None,
        "either": "text",
        "notes": [Address("Paris", "75")],
    }
    values.update(changes)
    return Account(**values)


def test_a_table_from_a_model_has_a_column_per_field_typed_from_avro() -> None:
    metadata = MetaData()
    mirror_table = Mirror(Database("sqlite://", metadata=metadata), accounts).table
    assert mirror_table.name == "accounts_v1"
    assert [c.name for c in mirror_table.primary_key.columns] == ["id"]
    got = {c.name: (type(c.type), c.nullable) for c in mirror_table.columns}
    assert {n: t for n, (t, _) in got.items()} == {n: t for n, (t, _) in EXPECTED_TYPES.items()}
    assert {n for n, (_, nullable) in got.items() if nullable} == {"nickname"}
    balance = mirror_table.c.balance.type
    assert isinstance(balance, Numeric)
    assert (balance.precision, balance.scale) == (12, 2)
    seen = mirror_table.c.seen.type
    assert isinstance(seen, DateTime)
    assert seen.timezone is True


def test_values_of_every_type_round_trip_through_the_database(database: Database) -> None:
    mirror = Mirror(database, accounts)
    database.create_missing()
    account = an_account()
    with database.begin() as conn:
        applied = mirror.apply(conn, [MirrorRecord("accounts.v1", 0, 0, 7, account, 1)], "g")
    assert applied.poisoned == ()
    with database.engine.connect() as conn:
        row = conn.execute(select(mirror.table)).one()._asdict()
    seen = row["seen"] if row["seen"].tzinfo else row["seen"].replace(tzinfo=dt.UTC)
    assert seen == account.seen  # SQLite gives the UTC value back without a zone
    assert row["tier"] == "GOLD"
    assert row["balance"] == Decimal("1234.50")
    assert row["token"] == account.token
    assert row["address"] == {"city": "London", "zip": "N1"}
    assert row["notes"] == [{"city": "Paris", "zip": "75"}]
    assert (row["tags"], row["attrs"], row["either"]) == (["a", "b"], {"x": 1}, "text")
    assert (row["avatar"], row["born"], row["nickname"]) == (b"\x00\xff", account.born, None)


class Product(pydantic.BaseModel):
    sku: str
    price: Decimal = pydantic.Field(max_digits=8, decimal_places=2)
    stock: int | None = None


def test_a_pydantic_model_maps_like_a_dataclass() -> None:
    columns = {c.column: (type(c.type), c.nullable) for c in field_columns(Product)}
    assert columns == {"sku": (Text, False), "price": (Numeric, False), "stock": (BigInteger, True)}


def test_a_hand_written_avsc_schema_maps_with_its_named_types() -> None:
    schema = {
        "type": "record",
        "name": "Shipment",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "weight", "type": "float"},
            {
                "name": "state",
                "type": {"type": "enum", "name": "State", "symbols": ["NEW", "SENT"]},
            },
            {"name": "previous", "type": ["null", "shop.State"], "default": None},
            {"name": "digest", "type": {"type": "fixed", "name": "Md5", "size": 16}},
            {"name": "at", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {"name": "when", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "count", "type": "int"},
        ],
    }
    got = {c.column: (type(c.type), c.nullable) for c in field_columns(schema)}
    assert got == {
        "id": (Uuid, False),
        "weight": (Float, False),
        "state": (Text, False),
        "previous": (Text, True),
        "digest": (LargeBinary, False),
        "at": (DateTime, False),
        "when": (Time, False),
        "count": (BigInteger, False),
    }


def test_rename_and_exclude_shape_the_table_and_the_rows(database: Database) -> None:
    mirror = Mirror(
        database,
        accounts,
        table="people",
        rename={"id": "account_id", "name": "full_name"},
        exclude=["avatar", "address", "tags", "attrs", "notes", "either"],
    )
    database.create_missing()
    assert "avatar" not in mirror.table.c
    assert mirror.key_column.name == "account_id"
    with database.begin() as conn:
        mirror.apply(conn, [MirrorRecord("accounts.v1", 0, 0, 7, an_account(), 1)], "g")
        mirror.apply(conn, [MirrorRecord("accounts.v1", 0, 1, 7, None, 2)], "g")
        mirror.apply(conn, [MirrorRecord("accounts.v1", 0, 2, 8, an_account(id=8), 3)], "g")
    with database.engine.connect() as conn:
        assert conn.execute(select(mirror.table.c.account_id, mirror.table.c.full_name)).all() == [
            (8, "Ada")
        ]


def test_mapping_mistakes_say_what_to_write() -> None:
    db = Database("sqlite://")
    with pytest.raises(ConfigError, match="rename/exclude name colour"):
        Mirror(db, accounts, exclude=["colour"])
    with pytest.raises(ConfigError, match="key field 'id' cannot be excluded"):
        Mirror(db, accounts, exclude=["id"])
    with pytest.raises(ConfigError, match="two fields to column"):
        Mirror(db, accounts, rename={"name": "nickname"})
    with pytest.raises(ConfigError, match="is not one"):
        Mirror(db, fm.EventTopic("accounts.opened", Account))  # type: ignore[arg-type]


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "account_rows"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)


def test_an_orm_class_is_written_through_its_table(database_url: str) -> None:
    db = Database(database_url, metadata=Base.metadata)
    try:
        excluded = [n for n in EXPECTED_TYPES if n not in ("id", "name")]
        mirror = Mirror(
            db, accounts, into=AccountRow, rename={"id": "account_id"}, exclude=excluded
        )
        assert db.create_missing() == ["account_rows", "ferryman_offsets"]
        with db.begin() as conn:
            mirror.apply(conn, [MirrorRecord("accounts.v1", 0, 0, 7, an_account(), 1)], "g")
        with db.sessions() as session:
            row = session.get(AccountRow, 7)
            assert row is not None
            assert row.name == "Ada"
    finally:
        db.dispose()
        Base.metadata.remove(Base.metadata.tables["ferryman_offsets"])


def test_a_user_table_that_cannot_hold_the_fields_is_refused_with_the_fix() -> None:
    db = Database("sqlite://")
    narrow = Table(
        "narrow", db.metadata, Column("id", Integer, primary_key=True), Column("name", Text)
    )
    with pytest.raises(ConfigError, match=r"exclude=\['active', 'score'"):
        Mirror(db, accounts, into=narrow)
    two_keys = Table(
        "two_keys",
        db.metadata,
        Column("id", Integer, primary_key=True),
        Column("x", Integer, primary_key=True),
    )
    with pytest.raises(ConfigError, match="exactly one"):
        Mirror(db, accounts, into=two_keys, transform=lambda v: {"id": v.id})
    renamed_key = Table(
        "renamed_key", db.metadata, Column("pk", Integer, primary_key=True), Column("id", Integer)
    )
    excluded = [n for n in EXPECTED_TYPES if n != "id"]
    with pytest.raises(ConfigError, match=r"rename=\{'id': 'pk'\}"):
        Mirror(db, accounts, into=renamed_key, exclude=excluded)
    with pytest.raises(ConfigError, match="neither a SQLAlchemy Table nor a mapped ORM class"):
        Mirror(db, accounts, into="accounts")


def test_a_live_table_lacking_columns_names_them_and_the_migration(database: Database) -> None:
    mirror = Mirror(database, accounts)
    with database.begin() as conn, pytest.raises(MirrorSchemaError, match="does not exist"):
        mirror.check(conn)
    # the table as an older version of the model made it: without nickname and notes
    old = MetaData()
    Table(
        "accounts_v1",
        old,
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in mirror.table.columns
            if c.name not in ("nickname", "notes")
        ),
    )
    old.create_all(database.engine)
    with database.begin() as conn, pytest.raises(MirrorSchemaError) as caught:
        mirror.check(conn)
    assert caught.value.missing == ("nickname", "notes")
    assert caught.value.table == "accounts_v1"
    assert "alembic revision --autogenerate" in str(caught.value)
    # create_missing never alters an existing table: the migration must
    assert database.create_missing() == ["ferryman_offsets"]
    with database.begin() as conn, pytest.raises(MirrorSchemaError):
        mirror.check(conn)


def test_a_model_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(SchemaError, match="needs a record model"):
        field_columns({"type": "string"})


products = fm.EntityTopic("products", Product, key="sku")


def test_pydantic_values_are_mirrored(database: Database) -> None:
    mirror = Mirror(database, products)
    database.create_missing()
    batch = [
        MirrorRecord("products", 0, 0, "p-1", Product(sku="p-1", price=Decimal("9.99")), 1),
        MirrorRecord("products", 0, 1, "p-2", Product(sku="p-2", price=Decimal("5"), stock=3), 2),
    ]
    with database.begin() as conn:
        assert mirror.apply(conn, batch, "g").poisoned == ()
    with database.engine.connect() as conn:
        got = conn.execute(select(mirror.table).order_by(mirror.table.c.sku)).all()
    assert [tuple(r) for r in got] == [("p-1", Decimal("9.99"), None), ("p-2", Decimal("5"), 3)]
