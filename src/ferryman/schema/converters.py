"""Generated converters between model instances and the dicts fastavro reads and writes.

Each record model gets two small functions compiled once: ``enc`` reads the attributes into a
dict (checking the types fastavro would silently coerce), ``dec`` builds the instance back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from typing import Any

from ferryman.errors import SchemaError
from ferryman.schema.parsing import AvroSchema

Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Mapped:
    """A type's Avro schema and its converters (None: no conversion needed)."""

    schema: AvroSchema
    enc: Convert | None = None
    dec: Convert | None = None
    check: type | None = None  # the class a value must have: fastavro would coerce or not check
    # enc as an expression template, cheaper than a call: {0} is the value, {1} the enc function
    inline: str | None = None


# Per record class: its compiled (enc, dec), which recursive records look up while being built,
# and its per-field encoders, which error messages use to name the field that failed.
_RECORD_CODE: dict[Any, tuple[Convert, Convert]] = {}
_FIELD_ENCODERS: dict[Any, list[tuple[str, Convert | None]]] = {}


def register_record(
    cls: type, enc: Convert, dec: Convert, fields: list[tuple[str, Convert | None]]
) -> None:
    """Remember the compiled converters of record class ``cls`` and its per-field encoders."""
    _RECORD_CODE[cls] = (enc, dec)
    _FIELD_ENCODERS[cls] = fields


def late_record(cls: type) -> tuple[Convert, Convert]:
    """Converters that call ``cls``'s own once registered: a recursive record's references to
    itself are mapped before its converters exist."""
    return (lambda v: _RECORD_CODE[cls][0](v)), (lambda d: _RECORD_CODE[cls][1](d))


def failing_field(value: Any) -> str | None:
    """The field of record instance ``value`` whose conversion for Avro fails (slow path only)."""
    for name, enc in _FIELD_ENCODERS.get(type(value), []):
        if enc is None:
            continue
        try:
            enc(getattr(value, name))
        except Exception:
            return name
    return None


def is_pydantic(model: type) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return issubclass(model, BaseModel)


def enum_name(member: enum.Enum) -> str:
    return member._name_


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` with naive taken as UTC: fastavro would take a naive datetime as local time."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


UTC_INLINE = "({0} if {0}.tzinfo is not None else {1}({0}))"


_exact: ContextVar[bool] = ContextVar("ferryman_exact_decimals", default=False)


@contextmanager
def exact_decimals() -> Iterator[None]:
    """Within it, decimal converters fit every value to its scale in full (no fast path)."""
    token = _exact.set(True)
    try:
        yield
    finally:
        _exact.reset(token)


def decimal_fitter(precision: int, scale: int, where: str) -> Convert:
    """A check that a Decimal fits ``decimal(precision, scale)`` exactly: never rounded."""
    quantum = Decimal(1).scaleb(-scale)
    whole_digits = precision - scale
    # quantize under these contexts raises (Inexact, InvalidOperation) rather than round or overflow
    fits = Context(prec=precision, traps=[Inexact, InvalidOperation])
    exact = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, InvalidOperation])
    spec = f"decimal({precision}, {scale})"

    def fit(value: Decimal) -> Decimal:
        # Fast path: few enough whole digits. Digits beyond the scale fastavro refuses; the codec
        # then converts again under exact_decimals(), which drops trailing zeros or says why not.
        if value.adjusted() < whole_digits and value.is_finite() and not _exact.get():
            return value
        if value.is_finite():
            try:
                return value.quantize(quantum, context=fits)  # only adds or drops zeros
            except ArithmeticError:
                pass
        raise misfit(value)

    def misfit(value: Decimal) -> SchemaError:
        if not value.is_finite():
            return SchemaError(
                f"{where} is {value}, not a finite number; Avro decimals hold finite numbers only, "
                "so send one"
            )
        try:
            value.quantize(quantum, context=exact)
        except Inexact:
            return SchemaError(
                f"{where} is {value}, with more digits after the point than its schema {spec} "
                f"keeps ({scale}); round it on purpose, e.g. value.quantize(Decimal('{quantum}')), "
                "before sending"
            )
        largest = Decimal((0, (9,) * precision, -scale))
        return SchemaError(
            f"{where} is {value}, too large for its schema {spec} (at most {largest}); send a "
            "smaller value or widen the field's DecimalSpec"
        )

    return fit


def checked(cls: type, where: str) -> Convert:
    """Identity for instances of ``cls``; SchemaError otherwise (fastavro would write it unchecked)."""

    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise SchemaError(
                f"{where} must be a {cls.__name__}, got {type(value).__name__} {value!r}; "
                "fix the value before sending"
            )
        return value

    return check


def by_type(convert: list[tuple[type, Convert]]) -> Convert:
    """A union's converter: the branch whose class the value has converts it."""

    def enc(value: Any) -> Any:
        for cls, fn in convert:
            if isinstance(value, cls):
                return fn(value)
        return value

    return enc


def each(inner: Convert | None) -> Convert | None:
    if inner is None:
        return None
    return lambda xs: [inner(x) for x in xs]


def each_value(inner: Convert | None) -> Convert | None:
    if inner is None:
        return None
    return lambda m: {k: inner(x) for k, x in m.items()}


def or_none(inner: Convert | None) -> Convert | None:
    if inner is None:
        return None
    return lambda x: None if x is None else inner(x)


def compile_record(cls: type, fields: list[tuple[str, Mapped]]) -> tuple[Convert, Convert]:
    """Generated converters: attribute reads into a dict, and the constructor call back.

    Generated code keeps the per-record cost to one dict display and one constructor call.
    """
    env: dict[str, Any] = {"_cls": cls, "_bad": _bad_value}
    checks: list[str] = []
    items: list[str] = []
    for i, (name, mapped) in enumerate(fields):
        var = f"_f{i}"
        checks.append(f"    {var} = v.{name}")
        if mapped.check is not None:
            env[f"_t{i}"] = mapped.check
            expected = f"a {mapped.check.__name__}"
            checks.append(
                f"    if {var}.__class__ is not _t{i} and not isinstance({var}, _t{i}): "
                f"_bad({cls.__name__!r}, {name!r}, {expected!r}, {var})"
            )
        if mapped.enc is not None:
            env[f"_e{i}"] = mapped.enc
        if mapped.inline is not None:
            items.append(f"{name!r}: {mapped.inline.format(var, f'_e{i}')}")
        elif mapped.enc is not None:
            items.append(f"{name!r}: _e{i}({var})")
        else:
            items.append(f"{name!r}: {var}")
        if mapped.dec is not None:
            env[f"_d{i}"] = mapped.dec
    decode_lines = [
        f"    d[{name!r}] = _d{i}(d[{name!r}])"
        for i, (name, mapped) in enumerate(fields)
        if mapped.dec is not None
    ]
    env.update(_new=object.__new__, _sa=object.__setattr__, _names=[n for n, _ in fields])
    if _adopts_dict(cls):
        # The dict fastavro just built becomes the instance's __dict__: no second copy, no
        # __init__ (safe because the class has no __post_init__/validators to run).
        decode_lines.append("    o = _new(_cls)")
        if is_pydantic(cls):
            # BaseModel's slots, set through their descriptors as model_construct does.
            slots = _pydantic_slots()
            env.update(_fields_set=set(env["_names"]), **slots)
            decode_lines += [
                "    _set_dict(o, d)",
                "    _set_fields_set(o, _fields_set.copy())",
                "    _set_extra(o, None)",
                "    _set_private(o, None)",
            ]
        else:
            decode_lines.append("    _sa(o, '__dict__', d)")
        decode_lines.append("    return o")
    elif is_pydantic(cls):
        keys = _validation_keys(cls)
        if keys:  # model_validate takes aliases, not field names (unless populate_by_name)
            env["_keys"] = keys
            decode_lines.append("    d = {_keys.get(k, k): x for k, x in d.items()}")
        decode_lines.append("    return _cls.model_validate(d)")
    else:
        init = [f.name for f in dataclasses.fields(cls) if f.init]
        decode_lines.append("    return _cls(" + ", ".join(f"{n}=d[{n!r}]" for n in init) + ")")
    src = (
        "def enc(v):\n"
        + "\n".join(checks or ["    pass"])
        + "\n    return {"
        + ", ".join(items)
        + "}\n"
        + "def dec(d):\n"
        + "\n".join(decode_lines)
        + "\n"
    )
    exec(compile(src, f"<ferryman avro {cls.__qualname__}>", "exec"), env)
    return env["enc"], env["dec"]


def _validation_keys(cls: type) -> dict[str, str]:
    """Field name -> the alias model_validate looks for, for the fields of ``cls`` that have one."""
    keys = {}
    for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        if isinstance(alias, str) and alias != name:
            keys[name] = alias
    return keys


def _pydantic_slots() -> dict[str, Any]:
    from pydantic import BaseModel

    slots = BaseModel.__dict__
    return {
        "_set_dict": slots["__dict__"].__set__,
        "_set_fields_set": slots["__pydantic_fields_set__"].__set__,
        "_set_extra": slots["__pydantic_extra__"].__set__,
        "_set_private": slots["__pydantic_private__"].__set__,
    }


def _adopts_dict(cls: type) -> bool:
    """True when an instance can be made by adopting a field dict as its ``__dict__``."""
    if is_pydantic(cls):
        decorators = getattr(cls, "__pydantic_decorators__", None)
        fields = cls.model_fields.values()  # type: ignore[attr-defined]
        return (
            # Validators and constraints run: such models are built by model_validate.
            not (decorators and (decorators.field_validators or decorators.model_validators))
            and not any(f.metadata for f in fields)
            and not getattr(cls, "__private_attributes__", None)
            and getattr(cls, "__pydantic_post_init__", None) is None
            and not getattr(cls, "__pydantic_root_model__", False)
            and cls.model_config.get("extra") != "allow"  # type: ignore[attr-defined]
        )
    params = getattr(cls, "__dataclass_params__", None)
    return (
        not hasattr(cls, "__post_init__")
        and "__slots__" not in cls.__dict__
        and all(f.init for f in dataclasses.fields(cls))
        and params is not None
    )


def _bad_value(model: str, field: str, expected: str, value: Any) -> typing.NoReturn:
    raise SchemaError(
        f"{model}.{field} must be {expected}, got {type(value).__name__} {value!r}; "
        "fix the value before sending"
    )
