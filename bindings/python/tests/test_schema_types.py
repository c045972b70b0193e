"""The TypedDicts of ``mpsupervisor.types`` against the library's JSON Schemas (``schema/``).

Every key of a schema must be a key of the TypedDict at the same place and every key of the
TypedDict a key of the schema, required in both or in neither, with the same JSON types
(string, boolean, integer, number, array, object, null) and the same closed sets of strings
(``Literal``); every event kind must have its TypedDict in ``Event``. The schemas come from the
repository and, through ``mpsupervisor.schema``, from the library: both must agree.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Union, cast

import pytest

from conftest import REPO
import mpsupervisor
from mpsupervisor import types as t

SCHEMA_DIR = REPO / "schema"

# The Python type of each schema's root.
ROOTS: Dict[str, Any] = {
    "groups": List[t.Group],
    "restart-options": t.RestartOptions,
    "logging": t.LoggingSettings,
    "snapshot": t.Snapshot,
    "status": t.Status,
    "events": List[t.Event],
}

# One alternative a value may take: (kind, detail), where kind is any, null, string, boolean,
# integer, number, array, map or object, and detail what is inside (the values of a closed
# string, the items of an array, the values of a map, the keys of an object).
Alt = Tuple[str, Any]
Props = Dict[str, Tuple[Any, bool]]  # key -> (schema node or annotation, required)


class Doc:
    def __init__(self, name: str) -> None:
        self.name = name
        self.root: Dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())

    def ref(self, ref: str) -> Dict[str, Any]:
        assert ref.startswith("#/$defs/"), ref
        node: Dict[str, Any] = self.root["$defs"][ref[len("#/$defs/"):]]
        return node

    def alts(self, node: Dict[str, Any]) -> List[Alt]:
        keys = {"$ref", "type", "const", "enum", "oneOf", "anyOf", "properties", "items"}
        if not keys & set(node):
            return [("any", None)]
        out: List[Alt] = []
        if "$ref" in node:
            out += self.alts(self.ref(node["$ref"]))
        variants = node.get("oneOf", []) + node.get("anyOf", [])
        if "properties" in node and variants:  # a base object and its variants (Event)
            for variant in variants:
                props = self.props(node)
                props.update(self.props(self.resolve(variant)))
                out.append(("object", props))
            return out
        for variant in variants:
            out += self.alts(variant)
        if "const" in node:
            out.append(("string", frozenset([node["const"]])))
        elif "enum" in node:
            out.append(("string", frozenset(node["enum"])))
        types = node.get("type", [])
        for ty in [types] if isinstance(types, str) else types:
            if ty == "string":
                if "const" not in node and "enum" not in node:
                    out.append(("string", None))
            elif ty == "object":
                if "properties" in node:
                    out.append(("object", self.props(node)))
                elif isinstance(node.get("additionalProperties"), dict):
                    out.append(("map", node["additionalProperties"]))
                else:
                    out.append(("object", {}))
            elif ty == "array":
                out.append(("array", node.get("items", {})))
            else:
                out.append((ty, None))
        return out

    def resolve(self, node: Dict[str, Any]) -> Dict[str, Any]:
        return self.resolve(self.ref(node["$ref"])) if "$ref" in node else node

    def props(self, node: Dict[str, Any]) -> Props:
        required = set(node.get("required", []))
        return {name: (p, name in required) for name, p in node.get("properties", {}).items()}


def py_alts(ann: Any) -> List[Alt]:
    if ann is Any:
        return [("any", None)]
    if ann is None or ann is type(None):
        return [("null", None)]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Union:
        return [alt for arg in args for alt in py_alts(arg)]
    if origin is typing.Literal:
        assert all(isinstance(a, str) for a in args), ann
        return [("string", frozenset(args))]
    if origin is list:
        return [("array", args[0])]
    if origin is dict:
        assert args[0] is str, ann
        return [("map", args[1])]
    if typing.is_typeddict(ann):
        hints = typing.get_type_hints(ann)
        return [("object", {k: (h, k in ann.__required_keys__) for k, h in hints.items()})]
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if ann in simple:
        return [(simple[ann], None)]
    raise AssertionError(f"no JSON shape for the annotation {ann!r}")


def _name(ann: Any) -> str:
    return getattr(ann, "__name__", repr(ann))


class Checker:
    def __init__(self) -> None:
        self.diffs: List[str] = []

    def compare(self, doc: Doc, path: str, node: Dict[str, Any], ann: Any) -> None:
        s, p = doc.alts(node), py_alts(ann)
        s_kinds, p_kinds = {k for k, _ in s}, {k for k, _ in p}
        if "any" in s_kinds or "any" in p_kinds:
            if not ("any" in s_kinds and "any" in p_kinds):
                self.diffs.append(f"{path}: the schema allows {sorted(s_kinds)}, Python {_name(ann)} allows {sorted(p_kinds)}")
            return
        for kind in ["null", "boolean", "integer", "number", "string", "array", "map", "object"]:
            if (kind in s_kinds) != (kind in p_kinds):
                side = "the schema" if kind in s_kinds else f"Python ({_name(ann)})"
                self.diffs.append(f"{path}: {side} allows {kind}, the other does not")
        if "string" in s_kinds and "string" in p_kinds:
            self.compare_strings(path, s, p)
        for kind in ("array", "map"):
            if kind in s_kinds and kind in p_kinds:
                inner_s = next(d for k, d in s if k == kind)
                inner_p = next(d for k, d in p if k == kind)
                self.compare(doc, path + ("[]" if kind == "array" else "{}"), inner_s, inner_p)
        if "object" in s_kinds and "object" in p_kinds:
            self.compare_objects(doc, path, [d for k, d in s if k == "object"], [d for k, d in p if k == "object"])

    def compare_strings(self, path: str, s: List[Alt], p: List[Alt]) -> None:
        def closed(alts: List[Alt]) -> Optional[FrozenSet[str]]:
            values: FrozenSet[str] = frozenset()
            for kind, detail in alts:
                if kind == "string":
                    if detail is None:
                        return None
                    values |= detail
            return values

        s_values, p_values = closed(s), closed(p)
        if s_values is None and p_values is not None:
            self.diffs.append(f"{path}: the schema allows any string, Python only {sorted(p_values)}")
        elif s_values is not None and p_values is None:
            self.diffs.append(f"{path}: the schema allows only {sorted(s_values)}, Python any string (use a Literal)")
        elif s_values is not None and p_values is not None:
            for v in sorted(s_values - p_values):
                self.diffs.append(f"{path}: value {v!r} of the schema is missing from the Python Literal")
            for v in sorted(p_values - s_values):
                self.diffs.append(f"{path}: value {v!r} of the Python Literal is not in the schema")

    def compare_objects(self, doc: Doc, path: str, s: List[Props], p: List[Props]) -> None:
        def kind_of(props: Props, values: Any) -> Optional[str]:
            if "kind" not in props:
                return None
            kinds = values(props["kind"][0])
            return next(iter(kinds)) if len(kinds) == 1 else None

        unmatched = list(range(len(p)))
        for s_props in s:
            s_kind = kind_of(s_props, lambda n: next((d for k, d in doc.alts(n) if k == "string" and d), frozenset()))
            best, score = None, -1
            for i in unmatched:
                p_kind = kind_of(p[i], lambda a: next((d for k, d in py_alts(a) if k == "string" and d), frozenset()))
                if s_kind is not None or p_kind is not None:
                    overlap = 1000 if s_kind == p_kind else -1
                else:
                    overlap = len(set(s_props) & set(p[i])) - len(set(s_props) ^ set(p[i]))
                if overlap > score:
                    best, score = i, overlap
            where = f"{path}[kind={s_kind}]" if s_kind else path
            if best is None or score < 0:
                self.diffs.append(f"{where}: the schema's object {sorted(s_props)} has no TypedDict in Python")
                continue
            unmatched.remove(best)
            self.compare_props(doc, where, s_props, p[best])
        for i in unmatched:
            p_kind = kind_of(p[i], lambda a: next((d for k, d in py_alts(a) if k == "string" and d), frozenset()))
            where = f"{path}[kind={p_kind}]" if p_kind else path
            self.diffs.append(f"{where}: the Python TypedDict {sorted(p[i])} is not an object of the schema")

    def compare_props(self, doc: Doc, path: str, s: Props, p: Props) -> None:
        for key, (node, required) in sorted(s.items()):
            if key not in p:
                self.diffs.append(f"{path}: key {key!r} of the schema is missing from the TypedDict")
                continue
            ann, p_required = p[key]
            if required != p_required:
                self.diffs.append(
                    f"{path}.{key}: {'required' if required else 'optional'} in the schema, "
                    f"{'required' if p_required else 'optional'} in the TypedDict"
                )
            self.compare(doc, f"{path}.{key}", node, ann)
        for key in sorted(set(p) - set(s)):
            self.diffs.append(f"{path}: key {key!r} of the TypedDict is not in the schema")


def check(name: str, ann: Any) -> List[str]:
    doc = Doc(name)
    checker = Checker()
    checker.compare(doc, name, doc.root, ann)
    return checker.diffs


@pytest.mark.parametrize("name", sorted(ROOTS))
def test_typeddicts_match_the_schema(name: str) -> None:
    assert check(name, ROOTS[name]) == []


def test_the_library_returns_the_repositorys_schemas() -> None:
    assert sorted(mpsupervisor.SCHEMA_NAMES) == sorted(ROOTS)
    for name in ROOTS:
        assert mpsupervisor.schema_json(name) == (SCHEMA_DIR / f"{name}.schema.json").read_text(), name
    assert mpsupervisor.schema("events")["title"] == "Events"
    with pytest.raises(ValueError, match="groups"):
        mpsupervisor.schema_json("nope")


def test_the_check_names_what_differs() -> None:
    """A TypedDict with a key removed, one of another type, one too many, a kind missing."""
    hints = typing.get_type_hints(t.Group)
    del hints["kill_mode"]
    hints["workers"] = str
    hints["colour"] = int
    # Through Any: mypy wants a literal dict for a TypedDict made by a call.
    reduced = cast(Any, typing.TypedDict)("ReducedGroup", hints, total=False)
    any_list: Any = List  # a list of a type made at run time, which mypy cannot follow
    diffs = check("groups", any_list[reduced])
    assert "groups[]: key 'kill_mode' of the schema is missing from the TypedDict" in diffs
    assert "groups[].workers: the schema allows integer, the other does not" in diffs
    assert "groups[].workers: Python (str) allows string, the other does not" in diffs
    assert "groups[]: key 'colour' of the TypedDict is not in the schema" in diffs
    assert "groups[].name: required in the schema, optional in the TypedDict" in diffs

    fewer = [e for e in typing.get_args(t.Event) if e is not t.WorkerStatusEvent]
    diffs = check("events", List[Union[tuple(fewer)]])  # type: ignore[misc]
    assert diffs == [
        "events[][kind=worker_status]: the schema's object ['generation', 'group_name', 'kind', "
        "'pid', 'seq', 'status', 'ts_ms', 'worker_id'] has no TypedDict in Python"
    ]
    readiness = typing.get_type_hints(t.Group)
    readiness["readiness"] = typing.Literal["warmup", "notify"]
    short = cast(Any, typing.TypedDict)("ShortGroup", readiness, total=False)
    assert "groups[].readiness: value 'sd_notify' of the schema is missing from the Python Literal" in check(
        "groups", any_list[short]
    )
