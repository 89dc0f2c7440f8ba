"""The model registry: versions numbered from 1 per model name, with schemas and aliases.

Reached as ``catalog.models``; the client's ``register_model_version`` and ``chalk model``
call it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from chalk.catalog.errors import ConflictError, NotFoundError, ValidationError
from chalk.catalog.records import ModelVersion
from chalk.catalog.schema import model_aliases, model_versions
from chalk.catalog.transactions import Transactions
from chalk.common.apply_guard import check_write

# pyarrow is imported by the functions that build schemas: opening the catalog to read groups
# (`chalk scaling-group list`) does not load it.
if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ModelRegistry", "parse_arrow_type", "schema_from_mapping"]

_MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
_ALIAS: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,252}$")
_REGISTER_ATTEMPTS: Final = 20


def parse_arrow_type(text: str, *, what: str) -> pa.DataType:
    """An Arrow type from its name as the CLI takes it: ``int64``, ``large_string``, ...

    Examples
    --------
    >>> parse_arrow_type("large_string", what="input field 'text'")
    DataType(large_string)
    >>> parse_arrow_type("list<int64>", what="x")
    ListType(list<item: int64>)
    >>> parse_arrow_type("timestamp[us, tz=UTC]", what="x")
    TimestampType(timestamp[us, tz=UTC])
    """
    import pyarrow as pa  # noqa: PLC0415

    text = text.strip()
    timestamp = re.fullmatch(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]", text)
    if timestamp:
        return pa.timestamp(timestamp.group(1), tz=timestamp.group(2))
    inner = re.fullmatch(r"(large_)?list<(?:item: )?(.+)>", text)
    if inner:
        item = parse_arrow_type(inner.group(2), what=what)
        return pa.large_list(item) if inner.group(1) else pa.list_(item)
    try:
        return pa.type_for_alias(text)
    except (ValueError, KeyError):
        raise ValidationError(
            f"{what} has an unknown Arrow type: expected a name such as int64, float64, "
            f"large_string, bool, timestamp[us, tz=UTC] or list<int64>, got {text!r}"
        ) from None


def schema_from_mapping(fields: Mapping[str, Any] | pa.Schema, *, what: str) -> pa.Schema:
    """An ordered Arrow schema from ``{"name": pa.DataType, ...}`` (order kept).

    Examples
    --------
    >>> import pyarrow as pa
    >>> schema_from_mapping({"text": pa.large_string()}, what="input_schema").names
    ['text']
    >>> schema_from_mapping({"text": str}, what="input_schema")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: input_schema field 'text' is not an Arrow type: expected a pyarrow DataType such as pa.large_string(), got type
    """  # noqa: E501
    import pyarrow as pa  # noqa: PLC0415

    if isinstance(fields, pa.Schema):
        return fields
    if not isinstance(fields, Mapping):
        raise ValidationError(
            f"{what} must map field names to Arrow types: expected a dict such as "
            f"{{'text': pa.large_string()}}, got {type(fields).__name__}"
        )
    result = []
    for name, given in fields.items():
        if not isinstance(name, str) or not name:
            raise ValidationError(f"{what} has a field name {name!r}: expected a non-empty str")
        arrow_type = (
            parse_arrow_type(given, what=f"{what} field {name!r}")
            if isinstance(given, str)
            else given
        )
        if not isinstance(arrow_type, pa.DataType):
            raise ValidationError(
                f"{what} field {name!r} is not an Arrow type: expected a pyarrow DataType "
                f"such as pa.large_string(), got {type(arrow_type).__name__}"
            )
        result.append(pa.field(name, arrow_type))
    return pa.schema(result)


class ModelRegistry:
    """Registers, finds and lists model versions."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def register(
        self,
        name: str,
        *,
        input_schema: pa.Schema,
        output_schema: pa.Schema,
        image: str,
        aliases: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        deterministic: bool = True,
    ) -> ModelVersion:
        """Store the next version of ``name``; concurrent registrations get distinct numbers.

        ``deterministic=False`` marks a version whose answers to the same arguments may
        differ: the engine never deduplicates, merges or caches its calls.
        """
        check_write(f"registering model {name!r}")
        alias_list = _validate(name, input_schema, output_schema, image, aliases)
        stored_metadata = dict(metadata or {})
        for key, value in stored_metadata.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"model {name!r} metadata {key!r} cannot be stored: expected JSON values "
                    f"(str, number, bool, None, list, dict), got {type(value).__name__}; "
                    f"store it as text, e.g. str(value) or value.isoformat()"
                ) from None
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                return self._insert(
                    name,
                    input_schema=input_schema,
                    output_schema=output_schema,
                    image=image,
                    aliases=alias_list,
                    metadata=stored_metadata,
                    deterministic=deterministic,
                )
            except sa.exc.IntegrityError:
                # Another writer took the same version number first (PostgreSQL, READ
                # COMMITTED); an alias clash was checked inside the transaction and raises.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _insert(
        self,
        name: str,
        *,
        input_schema: pa.Schema,
        output_schema: pa.Schema,
        image: str,
        aliases: list[str],
        metadata: dict[str, Any],
        deterministic: bool,
    ) -> ModelVersion:
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            taken = connection.execute(
                sa.select(model_aliases.c.alias, model_aliases.c.version).where(
                    model_aliases.c.model_name == name, model_aliases.c.alias.in_(aliases)
                )
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"alias {taken.alias!r} of model {name!r} already points to version "
                    f"{taken.version}: expected an alias unused by this model; pick another "
                    f"alias or register without it"
                )
            version = connection.execute(
                sa.select(sa.func.coalesce(sa.func.max(model_versions.c.version), 0) + 1).where(
                    model_versions.c.model_name == name
                )
            ).scalar_one()
            connection.execute(
                sa.insert(model_versions).values(
                    model_name=name,
                    version=version,
                    image=image,
                    input_schema=input_schema.serialize().to_pybytes(),
                    output_schema=output_schema.serialize().to_pybytes(),
                    metadata=metadata,
                    created_at=now,
                    deterministic=deterministic,
                )
            )
            for alias in aliases:
                connection.execute(
                    sa.insert(model_aliases).values(model_name=name, alias=alias, version=version)
                )
        return ModelVersion(
            model_name=name,
            model_version=int(version),
            image=image,
            input_schema=input_schema,
            output_schema=output_schema,
            aliases=tuple(aliases),
            metadata=metadata,
            created_at=now,
            deterministic=deterministic,
        )

    def get(self, name: str, version_or_alias: int | str | None = None) -> ModelVersion:
        """One version: the latest when ``version_or_alias`` is None, else by number or alias."""
        with self._catalog.read() as connection:
            query = sa.select(model_versions).where(model_versions.c.model_name == name)
            if version_or_alias is None:
                query = query.order_by(model_versions.c.version.desc()).limit(1)
            elif isinstance(version_or_alias, int) or str(version_or_alias).isdigit():
                query = query.where(model_versions.c.version == int(version_or_alias))
            else:
                alias = sa.select(model_aliases.c.version).where(
                    model_aliases.c.model_name == name,
                    model_aliases.c.alias == version_or_alias,
                )
                query = query.where(model_versions.c.version == alias.scalar_subquery())
            row = connection.execute(query).first()
            if row is None:
                raise NotFoundError(self._missing(connection, name, version_or_alias))
            return _record(row, _aliases_of(connection, name).get(row.version, ()))

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version of ``name`` (or of every model), oldest first."""
        with self._catalog.read() as connection:
            query = sa.select(model_versions).order_by(
                model_versions.c.model_name, model_versions.c.version
            )
            if name is not None:
                query = query.where(model_versions.c.model_name == name)
            rows = connection.execute(query).all()
            aliases = {
                model: _aliases_of(connection, model) for model in {row.model_name for row in rows}
            }
        return [_record(row, aliases[row.model_name].get(row.version, ())) for row in rows]

    def _missing(
        self, connection: sa.Connection, name: str, version_or_alias: int | str | None
    ) -> str:
        versions = connection.execute(
            sa.select(model_versions.c.version)
            .where(model_versions.c.model_name == name)
            .order_by(model_versions.c.version)
        ).scalars()
        known = [str(v) for v in versions]
        if not known:
            return (
                f"no model named {name!r} is registered; register it with `chalk model "
                f"register` or ChalkClient.register_model_version"
            )
        aliases = sorted({a for names in _aliases_of(connection, name).values() for a in names})
        wanted = "version" if str(version_or_alias).isdigit() else "alias"
        return (
            f"model {name!r} has no {wanted} {version_or_alias!r}: expected one of versions "
            f"{', '.join(known)}" + (f" or aliases {', '.join(aliases)}" if aliases else "")
        )


def _aliases_of(connection: sa.Connection, name: str) -> dict[int, tuple[str, ...]]:
    rows = connection.execute(
        sa.select(model_aliases.c.version, model_aliases.c.alias)
        .where(model_aliases.c.model_name == name)
        .order_by(model_aliases.c.alias)
    )
    found: dict[int, tuple[str, ...]] = {}
    for row in rows:
        found[row.version] = (*found.get(row.version, ()), row.alias)
    return found


def _record(row: Any, aliases: tuple[str, ...]) -> ModelVersion:
    import pyarrow as pa  # noqa: PLC0415

    return ModelVersion(
        model_name=row.model_name,
        model_version=int(row.version),
        image=row.image,
        input_schema=pa.ipc.read_schema(pa.py_buffer(row.input_schema)),
        output_schema=pa.ipc.read_schema(pa.py_buffer(row.output_schema)),
        aliases=aliases,
        metadata=dict(row.metadata),
        created_at=row.created_at,
        deterministic=bool(row.deterministic),
    )


def _validate(
    name: str,
    input_schema: pa.Schema,
    output_schema: pa.Schema,
    image: str,
    aliases: Iterable[str],
) -> list[str]:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ValidationError(
            f"model name {name!r} is not valid: expected letters, digits, '.', '_' or '-', "
            f"starting and ending with a letter or digit, at most 253 characters"
        )
    if not isinstance(image, str) or not image.strip():
        raise ValidationError(
            f"model {name!r} needs an image: expected an image reference such as "
            f"'my-model-image:latest', got {image!r}"
        )
    if len(input_schema) == 0:
        raise ValidationError(
            f"model {name!r} has an empty input_schema: expected at least one argument field"
        )
    if len(output_schema) != 1:
        raise ValidationError(
            f"model {name!r} has {len(output_schema)} output fields "
            f"({', '.join(output_schema.names)}): expected exactly one in this version"
        )
    for field_name in input_schema.names:
        if "," in field_name or field_name == "__chalk_row_metadata__" or not field_name.strip():
            raise ValidationError(
                f"model {name!r} input field {field_name!r} cannot name an argument: expected a "
                f"name without ',' (CHALK_INPUT_ARGS is comma-separated) other than the "
                f"reserved __chalk_row_metadata__"
            )
    duplicated = sorted({n for n in input_schema.names if input_schema.names.count(n) > 1})
    if duplicated:
        raise ValidationError(
            f"model {name!r} input_schema repeats field {duplicated[0]!r}: expected unique names"
        )
    alias_list = list(aliases)
    for alias in alias_list:
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise ValidationError(
                f"alias {alias!r} of model {name!r} is not valid: expected a name starting with "
                f"a letter or '_' (a number would read as a version), such as 'prod'"
            )
    if len(set(alias_list)) != len(alias_list):
        raise ValidationError(f"model {name!r} aliases repeat a name: {alias_list}")
    return alias_list
