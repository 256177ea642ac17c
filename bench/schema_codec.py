"""Avro codec throughput beside bare fastavro, for a 10-field record of mixed types (and the
decode of a 6-field record of primitives, which ferryman reads with a generated reader).

Run: ``python bench/schema_codec.py`` (``--records N``, ``--rounds R`` to change the volume).

Bare: ``fastavro.schemaless_writer`` / ``schemaless_reader`` on dicts with a parsed schema (the
ceiling). ferryman: ``AvroCodec.encode`` / ``decode`` on dataclass (and pydantic) instances, with the
Confluent wire header, schema-id lookup and model conversion. Rounds alternate between the two so
both see the same machine load; the best round of each counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
from pydantic import BaseModel

from ferryman.schema import AvroCodec, EmbeddedRegistry, SerdeContext, avro_schema


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


@dataclass
class Order:
    id: int
    customer: str
    amount: Decimal
    placed_at: dt.datetime
    ship_on: dt.date
    ref: uuid.UUID
    status: Status
    quantity: int
    weight: float
    note: str | None = None


@dataclass
class Placed:
    """A flat event of primitives, the shape most topics carry: read by a generated reader."""

    order_id: str
    customer_id: int
    sku: str
    quantity: int
    total: float
    note: str


class POrder(BaseModel):
    id: int
    customer: str
    amount: Decimal
    placed_at: dt.datetime
    ship_on: dt.date
    ref: uuid.UUID
    status: Status
    quantity: int
    weight: float
    note: str | None = None


def sample(i: int) -> dict[str, Any]:
    return {
        "id": 1_000_000 + i,
        "customer": f"customer-{i % 97}",
        "amount": Decimal(f"{i % 1000}.25"),
        "placed_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "ship_on": dt.date(2024, 1, 2),
        "ref": uuid.UUID(int=i),
        "status": Status.PAID if i % 2 else Status.NEW,
        "quantity": i % 10,
        "weight": 1.5 * (i % 7),
        "note": None if i % 3 else "fragile",
    }


def rate(fn: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()
    n = args.records

    rows = [sample(i) for i in range(n)]
    orders = [Order(**r) for r in rows]
    porders = [POrder(**r) for r in rows]
    dicts = [{**r, "status": r["status"].name} for r in rows]
    parsed = fastavro.parse_schema(avro_schema(Order))

    with tempfile.TemporaryDirectory() as tmp:
        registry = EmbeddedRegistry(Path(tmp) / "registry.db")
        codec = AvroCodec(Order, registry)
        pcodec = AvroCodec(POrder, registry)
        ctx = SerdeContext("bench.orders")
        pctx = SerdeContext("bench.porders")
        framed = [codec.encode(o, ctx) for o in orders]
        pframed = [pcodec.encode(o, pctx) for o in porders]
        bodies = [f[5:] for f in framed]
        flat = [
            Placed(f"o-{i}", i % 5000, f"sku-{i % 40}", i % 9, 9.5 * i, "x" * 30) for i in range(n)
        ]
        fcodec = AvroCodec(Placed, registry)
        fctx = SerdeContext("bench.placed")
        fframed = [fcodec.encode(p, fctx) for p in flat]
        fbodies = [f[5:] for f in fframed]
        fparsed = fastavro.parse_schema(avro_schema(Placed))
        assert fcodec.decode(fframed[1], fctx) == flat[1]
        assert codec.decode(framed[1], ctx) == orders[1]

        writer, reader = fastavro.schemaless_writer, fastavro.schemaless_reader

        def bare_encode() -> None:
            for d in dicts:
                buf = BytesIO()
                writer(buf, parsed, d)
                buf.getvalue()

        def bare_decode() -> None:
            for b in bodies:
                reader(BytesIO(b), parsed)

        def bare_decode_flat() -> None:
            for b in fbodies:
                reader(BytesIO(b), fparsed)

        def ours_decode_flat() -> None:
            decode = fcodec.decode
            for f in fframed:
                decode(f, fctx)

        def ours_encode() -> None:
            encode = codec.encode
            for o in orders:
                encode(o, ctx)

        def ours_decode() -> None:
            decode = codec.decode
            for f in framed:
                decode(f, ctx)

        def pyd_encode() -> None:
            encode = pcodec.encode
            for o in porders:
                encode(o, pctx)

        def pyd_decode() -> None:
            decode = pcodec.decode
            for f in pframed:
                decode(f, pctx)

        cases = {
            "bare encode": bare_encode,
            "ferryman encode": ours_encode,
            "ferryman encode (pydantic)": pyd_encode,
            "bare decode": bare_decode,
            "ferryman decode": ours_decode,
            "ferryman decode (pydantic)": pyd_decode,
            "bare decode (flat)": bare_decode_flat,
            "ferryman decode (flat)": ours_decode_flat,
        }
        best = dict.fromkeys(cases, 0.0)
        for _ in range(args.rounds):
            for name, fn in cases.items():
                best[name] = max(best[name], rate(fn, n))
        registry.close()

    print(f"{n} records x {args.rounds} rounds, 10-field record, best round (records/s)")
    for name, value in best.items():
        print(f"  {name:28s} {value:>10,.0f}")
    for side in ("encode", "decode"):
        bare = best[f"bare {side}"]
        print(
            f"  ratio {side}: dataclass {best[f'ferryman {side}'] / bare:.2f}x bare, "
            f"pydantic {best[f'ferryman {side} (pydantic)'] / bare:.2f}x bare (target >= 0.80x)"
        )
    flat_ratio = best["ferryman decode (flat)"] / best["bare decode (flat)"]
    print(f"  ratio decode, 6-field flat record (generated reader): {flat_ratio:.2f}x bare")


if __name__ == "__main__":
    main()
