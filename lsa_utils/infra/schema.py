"""Typed checks of a profile before any notebook runs: one line per problem, naming the key path as written.

A table ``{parameter: type}`` types the notebooks' parameters (the study's is
`lsa_utils.study.profile_schema`, beside the registries and settings dataclasses it reads); this module holds
what needs none of them: strict models derived from dataclasses and signatures, choices from a registry,
the check of every section against the notebooks that receive it, and messages a person can act on.

Validation is pydantic's, strict and in JSON mode: a value must already have its type (``"4"`` is no
integer, and PyYAML reads ``1e-3`` as a string: write ``1.0e-3``), a list stands for a tuple, and a key no
model declares is an error at any depth.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import types
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import papermill
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import ErrorDetails, PydanticCustomError

from lsa_utils.infra.profiles import COMMON_SECTION, notebook_parameters

STRICT = ConfigDict(extra="forbid", strict=True)
Location = tuple[str | int, ...]
Check = Callable[[Mapping[str, Any]], Iterable[tuple[Location, str]]]
EXPECTED = {  # pydantic error type -> what the value should have been
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list", "tuple_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}


class ProfileError(ValueError):
    """A profile that does not fit the notebooks it parameterises: one line per problem."""


def choice(noun: str, values: Iterable[str]) -> Any:
    """A string that must be one of ``values`` (a registry's names), called a ``noun`` in the error."""
    valid = tuple(values)

    def check(value: str) -> str:
        if value not in valid:
            raise PydanticCustomError("choice", "{value} is not {noun}; valid: {valid}",
                                      {"value": repr(value), "noun": _a(noun), "valid": ", ".join(valid)})
        return value

    return Annotated[str, AfterValidator(check)]


def dataclass_model(cls: type, overrides: Mapping[str, Any] | None = None) -> type[BaseModel]:
    """A strict model of a settings dataclass: its fields, their types, which are required.

    Derived, so a field added to the dataclass is checked too. ``overrides`` retypes fields by name (a
    registry's `choice` for a plain ``str``); a nested dataclass becomes a nested model, its own overrides
    given as a mapping under its name.
    """
    overrides = overrides or {}
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        hint, override = hints[field.name], overrides.get(field.name)
        if dataclasses.is_dataclass(hint):
            annotation = dataclass_model(hint, override)
        else:
            annotation = hint if override is None else override
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        fields[field.name] = (annotation, ... if required else None)
    return create_model(cls.__name__, __config__=STRICT, **fields)


def signature_model(name: str, *functions: Callable[..., Any]) -> type[BaseModel]:
    """A strict model of the parameters with defaults that all ``functions`` share, typed as the first
    annotates them: the settings a profile passes each of them as keywords."""
    shared = [{p.name for p in inspect.signature(fn).parameters.values() if p.default is not inspect.Parameter.empty}
              for fn in functions]
    hints = get_type_hints(functions[0])
    keys = [key for key in inspect.signature(functions[0]).parameters if key in set.intersection(*shared)]
    return mapping_model(name, {key: hints[key] for key in keys})


def field_type(model: type[BaseModel], name: str) -> Any:
    """The type of a model's field with its validators (pydantic keeps those beside the annotation)."""
    field = model.model_fields[name]
    return Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation


def mapping_model(name: str, fields: Mapping[str, Any]) -> type[BaseModel]:
    """A strict model of a mapping whose keys are all optional, ``fields`` giving each key's type."""
    return create_model(name, __config__=STRICT, **{key: (annotation, None) for key, annotation in fields.items()})


def declared_parameters(notebook: Path) -> list[str]:
    """The parameters a notebook's cell tagged ``parameters`` declares, sorted."""
    return sorted(papermill.inspect_notebook(str(notebook)))


def validate_profile(profile: Mapping[str, Mapping[str, Any]], notebooks_dir: Path,
                     parameter_types: Mapping[str, Any], name: str, check: Check | None = None) -> None:
    """Raise `ProfileError` listing every problem of ``profile`` (file ``name``) for the notebooks in ``notebooks_dir``.

    Each notebook's parameters (``all`` merged with its section) are validated against ``parameter_types`` (a
    parameter without one takes anything), then, when they fit, against ``check``: problems no single value
    shows, as (key path, message). A problem is reported once, where the user wrote it: in the notebook's
    section, in ``all``, or at a YAML anchor that other sections alias. Cheap: nothing loads or is written.
    """
    if not any(profile.values()):
        raise ProfileError(f"profile {name} is empty: a profile names itself and its settings (all: {{profile: mine, "
                           "zoo: {...}}); start from a copy of one in params/, e.g. params/cpu.yaml")
    notebooks = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if not p.name.startswith("."))
    declared = {notebook.stem: declared_parameters(notebook) for notebook in notebooks}
    problems = {text: text for text in _common_problems(profile.get(COMMON_SECTION) or {}, declared)}
    for stem, parameters in declared.items():
        for origin, text in _notebook_problems(profile, stem, parameters, parameter_types, check):
            problems.setdefault(origin, text)
    if problems:
        raise ProfileError("\n".join(f"profile {name}: {text}" for text in problems.values()))


def _common_problems(common: Mapping[str, Any], declared: Mapping[str, list[str]]) -> Iterator[str]:
    """``all`` must name the profile, and hold only keys that every notebook declares (each receives them)."""
    if not common.get("profile"):
        yield (f"{COMMON_SECTION}.profile: missing; name the profile there (it labels every table), e.g. "
               f"{COMMON_SECTION}: {{profile: mine}}")
    shared = sorted(set.intersection(*map(set, declared.values()))) if declared else []
    for key in common:
        takers = [stem for stem, parameters in declared.items() if key in parameters]
        if not takers:
            yield f"{COMMON_SECTION}.{key}: unknown key; valid keys: {', '.join(shared)}"
        elif key not in shared:
            one = len(takers) == 1
            yield (f"{COMMON_SECTION}.{key}: every notebook gets the keys of {COMMON_SECTION}, but only "
                   f"{', '.join(takers)} declare{'s' if one else ''} it: "
                   f"move it to {'that' if one else 'each'} section")


def _notebook_problems(profile: Mapping[str, Mapping[str, Any]], stem: str, parameters: list[str],
                       parameter_types: Mapping[str, Any], check: Check | None) -> Iterator[tuple[Hashable, str]]:
    """(origin, line) for each problem of one notebook's merged parameters; ``all``'s keys that it does not
    declare are `_common_problems`'."""
    section = profile.get(stem) or {}
    values = {key: value for key, value in notebook_parameters(profile, stem).items()
              if key in parameters or key in section}
    model = mapping_model(stem, {key: parameter_types.get(key, Any) for key in parameters})
    data = json.loads(json.dumps(values, default=str))  # what validation sees: JSON's types
    try:
        model.model_validate_json(json.dumps(data))
    except ValidationError as error:
        for detail in error.errors():  # a union's branches fail at one path: the first says it
            path = _data_path(data, detail)
            held = path[:-1] if detail["type"] == "missing" else path  # a missing key: its mapping is written
            yield _located(profile, stem, path, held, _message(detail, model, path))
        return
    for path, message in check(values) if check else ():
        yield _located(profile, stem, path, path, message)


_ABSENT = object()


def _child(node: Any, key: str | int) -> Any:
    """``node[key]`` in a profile's mappings and lists, or `_ABSENT`."""
    if isinstance(node, Mapping):
        return node.get(key, _ABSENT)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return _ABSENT


def _data_path(data: Any, detail: ErrorDetails) -> Location:
    """The keys and indices of ``detail``'s location that exist in ``data`` (pydantic adds union branches and
    ``[key]``), plus the key itself when it is missing."""
    path: list[str | int] = []
    node, loc = data, detail["loc"]
    for index, key in enumerate(loc):
        child = _child(node, key)
        if child is not _ABSENT or (detail["type"] == "missing" and index == len(loc) - 1):
            path.append(key)
            node = child
    return tuple(path)


def _located(profile: Mapping[str, Mapping[str, Any]], stem: str, path: Location, held: Location,
             message: str) -> tuple[Hashable, str]:
    """(origin, line): ``path`` as the user wrote it, under the notebook's section when that holds ``held``,
    else under ``all``. The origin is what the user wrote there, by identity for a mapping or list, since
    YAML's aliases share the anchor's object: one problem, reported at the first notebook."""
    section = profile.get(stem) or {}
    node: Any = section
    for key in held:
        node = _child(node, key)
    where = stem if held and node is not _ABSENT else COMMON_SECTION
    written = section.get(path[0]) if where == stem else None
    origin = id(written) if isinstance(written, Mapping | list) else where
    dotted = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path)
    return (origin, path), f"{where}{dotted}: {message}"


def _message(detail: ErrorDetails, model: type[BaseModel], path: Location) -> str:
    """What is wrong and what would be right, in the profile's terms."""
    kind, value = detail["type"], detail["input"]
    if kind == "extra_forbidden":
        return f"unknown key; valid keys: {', '.join(_fields_at(model, path[:-1]))}"
    if kind == "missing":
        return "missing (required: it has no default)"
    if kind in EXPECTED:
        return f"{_given(value)}, expected {EXPECTED[kind]}{_quoted_number(value)}"
    if kind == "choice":
        return detail["msg"]
    return f"{_shown(value)}: {detail['msg']}"


def _fields_at(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The keys the mapping at ``path`` accepts, read from the model's annotations."""
    annotation: Any = model
    for key in path:
        annotation = _unwrapped(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[key].annotation
        else:
            annotation = get_args(annotation)[-1 if isinstance(key, str) else 0]  # a mapping's values, a list's items
    return list(_unwrapped(annotation).model_fields)


def _unwrapped(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and without ``| None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation


def _given(value: Any) -> str:
    """The value and its type, as the profile reads, e.g. ``'4' is a str``."""
    if value is None:
        return "null"
    return f"{_shown(value)} is {_a({'dict': 'mapping'}.get(type(value).__name__, type(value).__name__))}"


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _quoted_number(value: Any) -> str:
    """A hint for a number YAML read as a string: quoted, or an exponent without a dot (YAML 1.1's ``1e-3``)."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    fixed = re.sub(r"^([+-]?\d+)([eE])", r"\1.0\2", value.strip())
    return f" (YAML reads {value} as a string: write {fixed})" if fixed != value.strip() else " (remove the quotes)"
