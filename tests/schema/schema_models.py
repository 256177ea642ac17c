"""Models used by the schema tests (at module level so their annotations resolve)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from ferryman.schema import TIMESTAMP_MILLIS, DecimalSpec


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"
    SHIPPED = "shipped"


@dataclass
class Address:
    city: str
    zip: str | None = None


@dataclass
class Everything:
    """One field of every supported kind."""

    id: int
    name: str
    price: float
    active: bool
    blob: bytes
    at: dt.datetime
    at_ms: Annotated[dt.datetime, TIMESTAMP_MILLIS]
    day: dt.date
    amount: Decimal
    exact: Annotated[Decimal, DecimalSpec(10, 2)]
    ref: uuid.UUID
    status: Status
    home: Address
    work: Address | None
    tags: list[str]
    history: list[Address]
    labels: dict[str, int]
    places: dict[str, Address]
    note: str | None = None
    retries: int = 3
    state: Status = Status.NEW
    extra: list[int] = field(default_factory=list)


class PAddress(BaseModel):
    city: str
    zip: str | None = None


class PEverything(BaseModel):
    id: int
    name: str
    at: dt.datetime
    day: dt.date
    amount: Decimal = Field(max_digits=12, decimal_places=3)
    ref: uuid.UUID
    status: Status
    home: PAddress
    work: PAddress | None = None
    tags: list[str] = []
    places: dict[str, PAddress] = {}
    note: str | None = None


@dataclass
class Node:
    """A recursive record."""

    label: str
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class Frozen:
    id: int
    status: Status


@dataclass
class WithPostInit:
    id: int
    doubled: int = 0

    def __post_init__(self) -> None:
        self.doubled = self.id * 2


@dataclass
class CustomerV1:
    __avro_name__ = "Customer"
    __avro_namespace__ = "shop"

    id: int
    name: str


@dataclass
class CustomerV2:
    """V1 plus a field with a default: a BACKWARD (and FULL) compatible change."""

    __avro_name__ = "Customer"
    __avro_namespace__ = "shop"

    id: int
    name: str
    email: str | None = None


@dataclass
class CustomerV3:
    """V1 plus a field without a default: not BACKWARD compatible."""

    __avro_name__ = "Customer"
    __avro_namespace__ = "shop"

    id: int
    name: str
    tier: int


class Validated(BaseModel):
    """A model whose validator must run on decode too."""

    email: str
    level: int = Field(ge=0)

    @field_validator("email")
    @classmethod
    def lower(cls, value: str) -> str:
        return value.lower()


@dataclass
class CustomerCopy:
    """A consumer's own copy of Customer, in its own module: fewer fields, its own namespace."""

    __avro_namespace__ = "consumer.models"

    name: str
    id: int


@dataclass
class NonNullDefault:
    """An optional field whose default is not None: its union lists the value's type first."""

    id: int
    region: str | None = "eu"


def everything() -> Everything:
    return Everything(
        id=2**40,
        name="Zoë",
        price=9.75,
        active=True,
        blob=b"\x00\xff",
        at=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        at_ms=dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC),
        day=dt.date(2024, 2, 29),
        amount=Decimal("-12345678901234567890.123456789"),
        exact=Decimal("12345678.90"),
        ref=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        status=Status.PAID,
        home=Address("Oslo", "0150"),
        work=None,
        tags=["a", "b"],
        history=[Address("Bergen"), Address("Tromsø", "9008")],
        labels={"x": 1, "y": -2},
        places={"summer": Address("Lofoten")},
        note="hi",
    )


@dataclass
class CustomerV4:
    """V1 plus collections with empty defaults."""

    __avro_name__ = "Customer"
    __avro_namespace__ = "shop"

    id: int
    name: str
    tags: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Times:
    """Timestamps in every position a converter must reach, with defaults."""

    at: dt.datetime
    at_ms: Annotated[dt.datetime, TIMESTAMP_MILLIS]
    maybe: dt.datetime | None
    many: list[dt.datetime]
    since: Annotated[dt.datetime, TIMESTAMP_MILLIS] = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    naive_since: dt.datetime = dt.datetime(2024, 1, 1)


@dataclass
class Money:
    cents: Annotated[Decimal, DecimalSpec(4, 2)]
    rate: Annotated[Decimal, DecimalSpec(2, 2)] = Decimal("0.25")


class SizeV1(enum.Enum):
    """An enum with a default symbol: readers map symbols added later to it."""

    __avro_name__ = "Size"
    __avro_default__ = "UNKNOWN"

    UNKNOWN = 0
    S = 1


class SizeV2(enum.Enum):
    __avro_name__ = "Size"
    __avro_default__ = "UNKNOWN"

    UNKNOWN = 0
    S = 1
    L = 2


class StatusPlus(enum.Enum):
    __avro_name__ = "Status"

    NEW = "new"
    PAID = "paid"
    SHIPPED = "shipped"
    REFUNDED = "refunded"


class BadDefault(enum.Enum):
    __avro_default__ = "HUGE"

    UNKNOWN = 0
    S = 1


class Aliased(BaseModel):
    """Field aliases (camelCase on the outside) and a constraint, so decode validates."""

    full_name: str = Field(alias="fullName")
    level: int = Field(ge=0, validation_alias="lvl")


@dataclass
class Order:
    __avro_name__ = "Order"
    __avro_namespace__ = "shop"

    id: int
    customer: CustomerV1


@dataclass
class OrderV2:
    """Order whose nested customer gained collections with empty defaults."""

    __avro_name__ = "Order"
    __avro_namespace__ = "shop"

    id: int
    customer: CustomerV4


@dataclass
class MoneyZeros:
    """Decimals with zeros beyond their scale, as Decimal arithmetic leaves them."""

    cents: list[Annotated[Decimal, DecimalSpec(4, 2)]]
    rate: Annotated[Decimal, DecimalSpec(2, 2)] = Decimal("0.2500")


@dataclass
class Street:
    __avro_namespace__ = "shop"
    line: str


@dataclass
class Road:
    """Street renamed, in the same module."""

    __avro_namespace__ = "shop"
    line: str


@dataclass
class Home:
    __avro_namespace__ = "shop"
    street: Street | None = None


@dataclass
class HomeOnARoad:
    """Home whose nested Street was renamed Road."""

    __avro_name__ = "Home"
    __avro_namespace__ = "shop"
    street: Road | None = None


@dataclass
class HomeWithSize:
    """Home with a new field and no default: a break, but no rename."""

    __avro_name__ = "Home"
    __avro_namespace__ = "shop"
    size: int
