"""The compatibility checker against the verdicts of Confluent's Schema Registry.

Confluent's registry checks Avro compatibility with Avro Java's ``SchemaCompatibility``
(``AvroSchema.isBackwardCompatible``): BACKWARD = the new schema reads the old one's data,
FORWARD = the old reads the new, FULL = both. Every verdict below is Confluent's; where Avro's or
Confluent's own test suites have the case, a comment names the test it mirrors. The verdicts are
also re-derived with Apache Avro's Python port of that same checker (``avro.compatibility``), so
a wrong entry in the table fails here rather than passing silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse
from fastavro import parse_schema

from ferryman.errors import ConfigError, SchemaError
from ferryman.schema.compat import LEVELS, can_read, check_compatibility

# --- schemas: Confluent's AvroCompatibilityTest fixtures and Avro's TestSchemas, as JSON ---


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


# AvroCompatibilityTest.schemaString1/2/3/4/6/7/8 (confluentinc/schema-registry)
S1 = record("myrecord", f("f1", "string"))
S2 = record("myrecord", f("f1", "string"), f("f2", "string", default="foo"))
S3 = record("myrecord", f("f1", "string"), f("f2", "string"))
S4 = record("myrecord", f("f1_new", "string", aliases=["f1"]))
S6 = record("myrecord", f("f1", ["null", "string"], doc="doc of f1"))
S7 = record("myrecord", f("f1", ["null", "string", "int"], doc="doc of f1"))
S8 = record(
    "myrecord",
    f("f1", "string"),
    f("f2", "string", default="foo"),
    f("f3", "string", default="bar"),
)


def customer(*address_fields: dict[str, Any], optional: bool = False) -> dict[str, Any]:
    address = record("Address", f("street", "string"), *address_fields)
    field = f("address", ["null", address], default=None) if optional else f("address", address)
    return record("Customer", f("id", "long"), field, namespace="shop")


def int_list(item: str) -> dict[str, Any]:
    # Avro TestSchemas.INT_LIST_RECORD / LONG_LIST_RECORD: a recursive linked list.
    return record("List", f("head", item), f("tail", "List"))


def ns_record(inner_namespace: str) -> dict[str, Any]:
    # Avro TestSchemas.NS_RECORD1 / NS_RECORD2
    inner = record("InnerRecord1", f("a", "int"), namespace=inner_namespace)
    return record("Record1", f("f1", ["null", {"type": "array", "items": inner}]))


@dataclass(frozen=True)
class Case:
    description: str
    old: Any
    new: Any
    backward: bool  # Confluent's verdict at BACKWARD (and BACKWARD_TRANSITIVE, with one old schema)
    forward: bool  # ... at FORWARD

    @property
    def full(self) -> bool:
        return self.backward and self.forward


CASES = [
    # AvroCompatibilityTest.testBasicBackwardsCompatibility, testBasicForwardsCompatibility and
    # testBasicFullCompatibility: "adding a field with default is a backward and a forward
    # compatible change".
    Case("add a field with a default", S1, S2, backward=True, forward=True),
    # testBasicBackwardsCompatibility: "adding a field w/o default is not a backward compatible
    # change"; testBasicForwardsCompatibility: "adding a field is a forward compatible change".
    Case("add a field without a default", S1, S3, backward=False, forward=True),
    # testBasicForwardsTransitiveCompatibility / testBasicFullTransitiveCompatibility: "removing a
    # field with a default is a compatible change" (checker.isCompatible(schema1, [schema2])).
    Case("remove a field with a default", S2, S1, backward=True, forward=True),
    # Avro TestSchemaCompatibility: ReaderWriter(A_INT_RECORD1, A_INT_B_INT_RECORD1) is
    # compatible (a reader ignores fields it lacks); Confluent testBasicFullTransitiveCompatibility:
    # "removing a field without a default is not a compatible change" (the old reader needs it).
    Case("remove a field without a default", S3, S1, backward=True, forward=False),
    # testBasicBackwardsCompatibility: "changing field name with alias is a backward compatible
    # change"; the old reader has no alias to find 'f1' under 'f1_new', so not forward.
    Case("rename a field with an alias", S1, S4, backward=True, forward=False),
    # No suite has this one: each side lacks the other's field and neither has a default (the
    # rule of Avro's TestSchemaCompatibilityReaderFieldMissingDefaultValue, both ways).
    Case(
        "rename a field without an alias",
        S1,
        record("myrecord", f("g1", "string")),
        backward=False,
        forward=False,
    ),
    # Avro TestSchemaCompatibility: ReaderWriter(A_LONG_RECORD1, A_INT_RECORD1) compatible;
    # TestSchemaCompatibilityTypeMismatch: {INT_SCHEMA, LONG_SCHEMA} incompatible.
    Case(
        "promote int to long",
        record("Record1", f("a", "int")),
        record("Record1", f("a", "long")),
        backward=True,
        forward=False,
    ),
    Case(
        "narrow long to int",
        record("Record1", f("a", "long")),
        record("Record1", f("a", "int")),
        backward=False,
        forward=True,
    ),
    # TestSchemaCompatibility: ReaderWriter(DOUBLE_SCHEMA, FLOAT_SCHEMA) and (FLOAT, LONG);
    # TestSchemaCompatibilityTypeMismatch: {FLOAT_SCHEMA, DOUBLE_SCHEMA}, {LONG_SCHEMA, FLOAT_SCHEMA}.
    Case("promote float to double", "float", "double", backward=True, forward=False),
    Case("promote long to float", "long", "float", backward=True, forward=False),
    # TestSchemaCompatibility: ReaderWriter(STRING_SCHEMA, BYTES_SCHEMA) and (BYTES, STRING).
    Case("string to bytes", "string", "bytes", backward=True, forward=True),
    # TestSchemaCompatibility: ReaderWriter(ENUM1_ABC_SCHEMA, ENUM1_AB_SCHEMA) compatible;
    # TestSchemaCompatibilityMissingEnumSymbols: reader ENUM1_AB_SCHEMA, writer ENUM1_ABC_SCHEMA.
    Case("add an enum symbol, no enum default", enum("AB"), enum("ABC"), True, False),
    Case("remove an enum symbol, no enum default", enum("ABC"), enum("AB"), False, True),
    # TestSchemaCompatibility: ReaderWriter(ENUM_AB_ENUM_DEFAULT_A_RECORD,
    # ENUM_ABC_ENUM_DEFAULT_A_RECORD) compatible: the reader's enum default absorbs 'C'.
    Case(
        "add an enum symbol, with an enum default",
        enum("AB", default="A"),
        enum("ABC", default="A"),
        backward=True,
        forward=True,
    ),
    Case(
        "remove an enum symbol, with an enum default",
        enum("ABC", default="A"),
        enum("AB", default="A"),
        backward=True,
        forward=True,
    ),
    # TestSchemaCompatibilityEnumDefaults.fieldDefaultNotAppliedForUnknownSymbol: a *field*
    # default does not stand in for an unknown symbol; only the enum's own default does.
    Case(
        "remove an enum symbol, with only a field default",
        record("R", f("s", enum("ABC"))),
        record("R", f("s", enum("AB"), default="A")),
        backward=False,
        forward=True,
    ),
    # testBasicBackwardsCompatibility: "adding a new type in union is a backward compatible
    # change" (schema7 after schema6) and "removing a type from a union is not a backward
    # compatible change" (schema6 after schema7).
    Case('widen a union ["null","string"] -> +"int"', S6, S7, backward=True, forward=False),
    Case('narrow a union ["null","string","int"] -> -"int"', S7, S6, backward=False, forward=True),
    # testBasicBackwardsCompatibility: "evolving a field type to a union is a backward compatible
    # change" and "removing a type from a union is not" (schema1 after schema6).
    Case("make a field optional (type -> union)", S1, S6, backward=True, forward=False),
    # Avro TestSchemaCompatibility: ReaderWriter(A_INT_B_DINT_RECORD1, A_INT_RECORD1) and
    # testValidateSchemaNewField, one record down.
    Case(
        "nested record: add a field without a default",
        customer(),
        customer(f("zip", "string")),
        backward=False,
        forward=True,
    ),
    Case(
        "nested record: add a field with a default",
        customer(),
        customer(f("zip", "string", default="")),
        backward=True,
        forward=True,
    ),
    Case(
        "optional nested record: add a field without a default",
        customer(optional=True),
        customer(f("zip", "string"), optional=True),
        backward=False,
        forward=True,
    ),
    Case(
        "nested record: change a field's type",
        customer(f("zip", "int")),
        customer(f("zip", "string")),
        backward=False,
        forward=False,
    ),
    # TestSchemaCompatibilityNameMismatch: {EMPTY_RECORD2, EMPTY_RECORD1}.
    Case("rename a record", record("Record1"), record("Record2"), backward=False, forward=False),
    Case(
        "rename a record with an alias",
        record("Record1"),
        record("Record2", aliases=["Record1"]),
        backward=True,
        forward=False,
    ),
    # TestSchemaCompatibility: ReaderWriter(NS_RECORD1, NS_RECORD2): names match unqualified.
    Case(
        "move an inner record to another namespace", ns_record("ns1"), ns_record("ns2"), True, True
    ),
    # TestSchemaCompatibilityFixedSizeMismatch: {FIXED_4_BYTES, FIXED_8_BYTES}.
    Case(
        "resize a fixed",
        {"type": "fixed", "name": "Fixed", "size": 4},
        {"type": "fixed", "name": "Fixed", "size": 8},
        backward=False,
        forward=False,
    ),
    # TestSchemaCompatibility: ReaderWriter(LONG_LIST_RECORD, INT_LIST_RECORD) compatible;
    # TestSchemaCompatibilityTypeMismatch: {INT_LIST_RECORD, LONG_LIST_RECORD} incompatible.
    Case("recursive record: int -> long", int_list("int"), int_list("long"), True, False),
    # TestSchemaCompatibility: ReaderWriter(LONG_ARRAY_SCHEMA, INT_ARRAY_SCHEMA),
    # (LONG_MAP_SCHEMA, INT_MAP_SCHEMA); TypeMismatch: {INT_ARRAY_SCHEMA, LONG_ARRAY_SCHEMA}.
    Case(
        "array items int -> long",
        {"type": "array", "items": "int"},
        {"type": "array", "items": "long"},
        backward=True,
        forward=False,
    ),
    Case(
        "map values long -> int",
        {"type": "map", "values": "long"},
        {"type": "map", "values": "int"},
        backward=False,
        forward=True,
    ),
    # Logical types are resolved as their underlying type by SchemaCompatibility.
    Case(
        "logical type date -> plain int",
        record("R", f("d", {"type": "int", "logicalType": "date"})),
        record("R", f("d", "int")),
        backward=True,
        forward=True,
    ),
    Case(
        "timestamp-millis -> timestamp-micros",
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "long", "logicalType": "timestamp-micros"},
        backward=True,
        forward=True,
    ),
]

EXPECTED_LEVELS = {"BACKWARD": "backward", "FORWARD": "forward", "FULL": "full"}


def verdicts(case: Case) -> dict[str, bool]:
    """Confluent's verdict at each level; with one old schema the transitive forms agree."""
    out = {level: getattr(case, attr) for level, attr in EXPECTED_LEVELS.items()}
    out.update({f"{level}_TRANSITIVE": out[level] for level in EXPECTED_LEVELS})
    out["NONE"] = True
    return out


def avro_can_read(reader: Any, writer: Any) -> bool:
    """Apache Avro's own verdict (its Python port of Java's SchemaCompatibility)."""
    # avro leaves this __init__ unannotated (the rest of the checker is typed)
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro_parse(json.dumps(reader)), avro_parse(json.dumps(writer))
    )
    return bool(result.compatibility is SchemaCompatibilityType.compatible)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.description)
def test_verdicts_match_confluent(case: Case) -> None:
    got = {level: not check_compatibility(case.new, [case.old], level) for level in LEVELS}
    assert got == verdicts(case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.description)
def test_the_table_agrees_with_apache_avro(case: Case) -> None:
    assert avro_can_read(case.new, case.old) == case.backward
    assert avro_can_read(case.old, case.new) == case.forward


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.description)
def test_can_read_is_the_backward_and_forward_check(case: Case) -> None:
    assert (not can_read(case.new, case.old)) == case.backward
    assert (not can_read(case.old, case.new)) == case.forward


# --- transitive versus non-transitive: histories, oldest first ---


@dataclass(frozen=True)
class History:
    description: str
    existing: list[Any]
    new: Any
    compatible_at: frozenset[str]


HISTORIES = [
    # AvroCompatibilityTest.testBasicBackwardsTransitiveCompatibility: "removing a default is a
    # compatible change, but not transitively" (schema3 after schema1, schema2);
    # testBasicFullCompatibility "only schema 2 is checked"; testBasicFullTransitiveCompatibility
    # "transitively adding a field without a default is not a compatible change".
    History(
        "v3 drops v2's default: compatible with v2, not with v1",
        [S1, S2],
        S3,
        frozenset({"BACKWARD", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "NONE"}),
    ),
    # testBasicForwardsTransitiveCompatibility: "removing a default is not a transitively
    # compatible change" (schema1 after schema3, schema2); testBasicForwardsCompatibility and
    # testBasicFullCompatibility: "only schema 2 is checked".
    History(
        "v3 drops a field v1 needs: forward to v2, not to v1",
        [S3, S2],
        S1,
        frozenset({"BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FULL", "NONE"}),
    ),
    # testBasicBackwardsTransitiveCompatibility / testBasicFullTransitiveCompatibility:
    # "iteratively adding fields with defaults is a compatible change".
    History("iteratively add fields with defaults", [S1, S2], S8, frozenset(LEVELS)),
    # testBasicForwardsTransitiveCompatibility: "iteratively removing fields with defaults".
    History("iteratively remove fields with defaults", [S8, S2], S1, frozenset(LEVELS)),
]


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.description)
def test_transitive_levels_check_every_existing_schema(history: History) -> None:
    compatible = {
        level for level in LEVELS if not check_compatibility(history.new, history.existing, level)
    }
    assert compatible == history.compatible_at


def test_a_transitive_failure_names_the_old_schema_it_breaks_with() -> None:
    problems = check_compatibility(S3, [S1, S2], "BACKWARD_TRANSITIVE")
    assert problems == [
        "myrecord.f2: field 'f2' has no default in the new schema and existing schema #1 of 2 "
        "has no such field; a reader with the new schema cannot read data written with "
        "existing schema #1 of 2 (BACKWARD_TRANSITIVE)"
    ]


# --- messages name the field, what changed and the rule ---


def test_added_field_without_default_names_field_and_rule() -> None:
    assert check_compatibility(S3, [S1], "BACKWARD") == [
        "myrecord.f2: field 'f2' has no default in the new schema and the old schema has no "
        "such field; a reader with the new schema cannot read data written with the old schema "
        "(BACKWARD)"
    ]


def test_nested_field_path() -> None:
    problems = check_compatibility(
        customer(f("zip", "string"), optional=True), [customer(optional=True)], "full"
    )
    assert len(problems) == 1
    assert problems[0].startswith("Customer.address.zip: field 'zip' has no default")
    assert problems[0].endswith("(FULL)")


def test_removed_field_fails_forward_naming_the_old_reader() -> None:
    (problem,) = check_compatibility(S1, [S3], "FORWARD")
    assert problem.startswith("myrecord.f2: field 'f2' has no default in the old schema")
    assert "a reader with the old schema cannot read data written with the new schema" in problem
    assert problem.endswith("(FORWARD)")


def test_type_change_says_what_changed() -> None:
    (problem,) = check_compatibility(
        record("R", f("a", "int")), [record("R", f("a", "long"))], "BACKWARD"
    )
    assert problem.startswith(
        "R.a: the old schema has 'long' where the new schema has 'int', "
        "and 'long' cannot be read as 'int'"
    )


def test_enum_symbol_message_lists_the_symbols() -> None:
    (problem,) = check_compatibility(
        record("R", f("s", enum("A"))), [record("R", f("s", enum("ABC")))], "BACKWARD"
    )
    assert problem.startswith("R.s: enum 'Status' has symbol(s) 'B', 'C' in the old schema")
    assert "no default symbol" in problem


def test_narrowed_union_names_the_dropped_branch() -> None:
    (problem,) = check_compatibility(S6, [S7], "BACKWARD")
    assert problem.startswith("myrecord.f1: the old schema can write 'int'")
    assert "union [null, string]" in problem


def test_array_items_and_map_values_in_the_path() -> None:
    old = record("R", f("xs", {"type": "array", "items": record("X", f("a", "int"))}))
    new = record(
        "R", f("xs", {"type": "array", "items": record("X", f("a", "int"), f("b", "int"))})
    )
    (problem,) = check_compatibility(new, [old], "BACKWARD")
    assert problem.startswith("R.xs[].b: field 'b' has no default")
    (problem,) = can_read({"type": "map", "values": "int"}, {"type": "map", "values": "long"})
    assert (
        problem
        == "(root){}: the writer schema has 'long' where the reader schema has 'int', and 'long' cannot be read as 'int'"
    )


def test_every_problem_is_reported() -> None:
    new = record("R", f("a", "int"), f("b", "string"), f("c", enum("AB")))
    old = record("R", f("a", "long"), f("c", enum("ABC")))
    problems = check_compatibility(new, [old], "BACKWARD")
    assert [p.split(":")[0] for p in problems] == ["R.a", "R.b", "R.c"]


# --- levels, edge cases ---


@pytest.mark.parametrize("level", ["backward", "Full_Transitive", " none "])
def test_levels_are_case_insensitive(level: str) -> None:
    assert check_compatibility(S1, [S1], level) == []


def test_a_bad_level_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"BACKWARD, BACKWARD_TRANSITIVE, FORWARD.*NONE"):
        check_compatibility(S1, [S1], "BACKWARDS")


def test_none_allows_anything_and_the_first_schema_is_always_accepted() -> None:
    assert check_compatibility("int", ["string"], "NONE") == []
    assert check_compatibility("int", [], "FULL_TRANSITIVE") == []
    assert check_compatibility("int", ["string"], "FULL") != []


def test_non_transitive_checks_only_the_latest() -> None:
    assert check_compatibility("long", ["string", "int"], "BACKWARD") == []
    assert len(check_compatibility("long", ["string", "int"], "BACKWARD_TRANSITIVE")) == 1


def test_an_unknown_named_type_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="unknown type 'Adress'"):
        can_read(record("R", f("a", "Adress")), record("R"))


def test_a_malformed_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="lacks 'fields'"):
        can_read({"type": "record", "name": "R"}, "int")


def test_named_types_are_resolved_through_namespaces() -> None:
    def order(item_type: str) -> dict[str, Any]:
        item = record("Item", f("qty", item_type), namespace="shop.items")
        return record(
            "Order",
            f("first", item),
            f("rest", {"type": "array", "items": "shop.items.Item"}),
            namespace="shop",
        )

    assert can_read(order("long"), order("int")) == []
    assert [p.split(":")[0] for p in can_read(order("int"), order("long"))] == [
        "Order.first.qty",
        "Order.rest[].qty",
    ]


def test_mutually_recursive_types_terminate() -> None:
    def tree(leaf: str) -> dict[str, Any]:
        node = record(
            "Node",
            f("value", leaf),
            f("children", {"type": "array", "items": record("Edge", f("to", "Node"))}),
        )
        return record("Tree", f("root", ["null", node]))

    assert can_read(tree("long"), tree("int")) == []
    assert can_read(tree("int"), tree("long")) != []


# Avro TestSchemaCompatibility.COMPATIBLE_READER_WRITER_TEST_CASES (a sample), as (reader, writer).
COMPATIBLE_PAIRS = [
    ("long", "int"),
    ("float", "int"),
    ("double", "long"),
    ("bytes", "string"),
    (["int", "string"], ["string", "int"]),
    (["long"], ["int"]),
    (["double"], ["int", "float"]),
    ("long", ["int", "long"]),  # a reader that reads every branch of the writer's union
    ("double", ["int", "long", "float", "double"]),
    ("int", ["int"]),  # singleton unions
    (["int"], "int"),
    ("null", "null"),
    (["null", "long"], "int"),  # a non-union writer read by a promoting branch
    ([record("A"), record("B")], record("B")),  # ... by the branch of its name
]
# Avro TestSchemaCompatibilityTypeMismatch / MissingUnionBranch (a sample).
INCOMPATIBLE_PAIRS = [
    ("int", "long"),
    ("long", "float"),
    ("float", "double"),
    ("string", "int"),
    ("float", ["int", "long", "float", "double"]),
    ("int", ["int", "float"]),
    (["int", "string"], ["int", "string", "long"]),  # testUnionReaderWriterSubsetIncompatibility
    (["null"], "int"),
    ({"type": "map", "values": "int"}, {"type": "array", "items": "int"}),
]


@pytest.mark.parametrize(("reader", "writer"), COMPATIBLE_PAIRS)
def test_avro_compatible_pairs(reader: Any, writer: Any) -> None:
    assert can_read(reader, writer) == []
    assert avro_can_read(reader, writer)


@pytest.mark.parametrize(("reader", "writer"), INCOMPATIBLE_PAIRS)
def test_avro_incompatible_pairs(reader: Any, writer: Any) -> None:
    assert can_read(reader, writer) != []
    assert not avro_can_read(reader, writer)


def test_fastavro_parsed_schemas_and_schema_text_are_accepted() -> None:
    def order(qty: str) -> dict[str, Any]:
        item = record("Item", f("qty", qty))
        return record("Order", f("a", item), f("b", "Item"), namespace="shop")

    parsed_new, parsed_old = parse_schema(order("int")), parse_schema(order("long"))
    assert [p.split(":")[0] for p in can_read(parsed_new, parsed_old)] == [
        "Order.a.qty",
        "Order.b.qty",
    ]
    assert check_compatibility(json.dumps(S2), [json.dumps(S1)], "FULL") == []
    assert check_compatibility(json.dumps(S3), [json.dumps(S1)], "FULL") != []
    with pytest.raises(SchemaError, match="not JSON"):
        can_read('{"type": ', "int")
