"""Reading spec files: every problem of a file at once, as (field path, reason)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter, ValidationError

from mlplatform.spec.data import Column, Partitions
from mlplatform.spec.project import ProjectSpec, cross_field_problems


class SpecError(Exception):
    """A spec file that cannot be used; ``problems`` lists (field path, reason).

    ``partial`` is the spec built, unvalidated, from the sections that did validate, when
    those include everything candidates are built from (so estimator params can still be
    checked in the same pass); None otherwise.
    """

    def __init__(
        self, path: Path, problems: list[tuple[str, str]], partial: ProjectSpec | None = None
    ):
        self.path = path
        self.problems = problems
        self.partial = partial
        lines = [f"{path}: {len(problems)} problem(s)"]
        lines += [f"  {loc or '<file>'}: {msg}" for loc, msg in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _problems(exc: ValidationError) -> Iterator[tuple[str, str]]:
    errors = exc.errors()
    locs = [_loc(e["loc"]) for e in errors]
    for err, loc in zip(errors, locs, strict=True):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "too_short" and any(o != loc and o.startswith(f"{loc}.") for o in locs):
            continue  # a list whose items are invalid is not also "too short"
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the README's spec reference)"
        if err["type"] == "value_error" and ("\n" in msg or not loc):
            for part in msg.split("\n"):
                field, sep, reason = part.partition(": ")
                if sep and re.match(r"^[\w.]+$", field):
                    yield field, reason
                else:
                    yield loc, part
            continue
        yield loc, msg


# Sections a candidate's estimator is built from (see SpecError.partial).
_BUILD_SECTIONS = ("task", "target", "columns", "features", "training", "candidates")


def _valid_sections(data: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Each top-level section validated on its own (defaults for absent optional ones).

    Returns the sections that validated and the partitions fields written in the file."""
    sections: dict[str, Any] = {}
    written: set[str] = set()
    for name, info in ProjectSpec.model_fields.items():
        if name == "source_file":
            continue
        if name not in data:
            if not info.is_required():
                sections[name] = info.get_default(call_default_factory=True)
            continue
        try:
            field_type: Any = Annotated[info.annotation, info]
            value = TypeAdapter(field_type).validate_python(data[name])
        except ValidationError:
            if name == "columns" and isinstance(data[name], dict):
                sections[name] = {c: _column_or_none(col) for c, col in data[name].items()}
            continue
        sections[name] = value
        if isinstance(value, Partitions):
            written = set(value.model_fields_set)
    return sections, written


def _column_or_none(data: object) -> Column | None:
    try:
        return Column.model_validate(data)
    except ValidationError:
        return None


def spec_problems(
    path: Path, data: dict[str, Any]
) -> tuple[ProjectSpec | None, list[tuple[str, str]], ProjectSpec | None]:
    """Validate spec data read from ``path``: (spec or None, every problem, partial spec)."""
    problems: list[tuple[str, str]] = []
    name = data.get("name")
    if isinstance(name, str) and name != path.stem:
        problems.append(("name", f"{name!r} must equal the file name {path.stem!r}"))
    try:
        spec = ProjectSpec.model_validate({**data, "source_file": path.resolve()})
    except ValidationError as exc:
        problems += _problems(exc)
        sections, written = _valid_sections(data)
        if all(e["loc"] for e in exc.errors()):  # fields failed, so cross-field checks did not run
            problems += cross_field_problems(sections, written)
        partial = None
        columns_ok = None not in sections.get("columns", {}).values()
        if columns_ok and all(s in sections for s in _BUILD_SECTIONS):
            partial = ProjectSpec.model_construct(**sections, source_file=path.resolve())
        return None, list(dict.fromkeys(problems)), partial
    return (None if problems else spec), problems, spec


def load_spec(path: Path | str) -> ProjectSpec:
    """Load and validate one spec file; raise SpecError naming the file, field path and reason.

    Every problem is reported at once: field errors, and each cross-field check whose
    sections are valid on their own."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, [("", f"cannot read: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(path, [("", f"invalid YAML: {exc}")]) from exc
    if not isinstance(data, dict):
        raise SpecError(path, [("", "expected a mapping of fields at the top level")])
    spec, problems, partial = spec_problems(path, data)
    if spec is None:
        raise SpecError(path, problems, partial)
    return spec


def spec_files(projects_dir: Path) -> list[Path]:
    """Spec files of a projects folder, sorted by name."""
    return sorted(p for p in projects_dir.glob("*.yaml") if not p.name.startswith("."))


def load_specs(projects_dir: Path) -> list[ProjectSpec]:
    """Every spec of a projects folder; the first bad file raises SpecError."""
    if not projects_dir.is_dir():
        raise SpecError(projects_dir, [("", "projects folder does not exist")])
    return [load_spec(p) for p in spec_files(projects_dir)]
