"""``@features`` classes and ``feature()``: user classes to ``ClassDef``s and a ``FeatureGraph``.

Users' feature modules apply the decorator; ``chalk apply`` and the client read ``graph_of``.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar, Final, TypeVar, overload

import pyarrow as pa

from chalk.common.errors import ChalkError
from chalk.features.expr import Deferred, Expr, ExpressionError, features_used, node_of
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph
from chalk.features.staleness import StalenessError, max_staleness_seconds
from chalk.features.types import FeatureTypeError, arrow_type_of

__all__ = [
    "FeatureClassError",
    "FeatureReference",
    "feature",
    "feature_classes",
    "features",
    "graph_for",
    "graph_of",
    "namespace_clashes",
    "namespace_of",
]

T = TypeVar("T", bound=type)

# Every decorated class of this process by (module, qualified name): defining a class again
# under the same name (a re-import, a notebook cell run twice) replaces the earlier one.
_REGISTRY: Final[dict[tuple[str, str], type]] = {}
_CLASS_ATTRIBUTE: Final = "__chalk_class__"
_WORD_START: Final = re.compile(r"(.)([A-Z][a-z]+)")
_LOWER_UPPER: Final = re.compile(r"([a-z0-9])([A-Z])")


class FeatureClassError(ChalkError, ValueError):
    """A ``@features`` class is written wrongly; the message names the class and its file."""


@dataclass(frozen=True, slots=True)
class FeatureReference:
    """``Document.text``: one feature of a ``@features`` class, as queries name it.

    Examples
    --------
    >>> import pyarrow as pa
    >>> ref = FeatureReference("document", "text", pa.large_string())
    >>> str(ref), ref.fqn
    ('document.text', 'document.text')
    """

    namespace: str
    name: str
    arrow_type: pa.DataType
    nullable: bool = False

    @property
    def fqn(self) -> str:
        """The fully qualified name, ``<namespace>.<name>``."""
        return f"{self.namespace}.{self.name}"

    def __str__(self) -> str:
        return self.fqn


@dataclass(frozen=True, slots=True, eq=False)  # eq on a Deferred builds an expression
class _FeatureOptions:
    """What ``feature()`` returns: stands as the attribute's default until the class is read."""

    description: str | None
    primary: bool
    expression: Deferred | Expr | None
    max_staleness: object = None


def feature(
    description: str | None = None,
    primary: bool = False,
    expression: Deferred | Expr | None = None,
    max_staleness: str | timedelta | None = None,
) -> Any:
    """Options of one feature, written as the attribute's default.

    Parameters
    ----------
    description
        Free text stored with the feature in the graph.
    primary
        Whether this feature is the class's primary key (otherwise ``id`` is).
    expression
        What computes the feature, built from ``_`` and the F functions; None for an input.
    max_staleness
        How long the answers of the models this feature's expression calls
        (``F.catalog_call``) may be reused for the same model version and argument values:
        ``"30s"``, ``"10m"``, ``"1h"``, ``"1d"``, ``"1h30m"``, a ``timedelta``, or
        ``"infinity"``; None or ``"0s"`` calls the model every time. Only model answers are
        cached: on a feature whose expression calls no model it has no effect. Never for a
        model version registered with ``deterministic=False``.

    Examples
    --------
    >>> from chalk.features import _, feature, features
    >>> @features
    ... class Account:
    ...     number: str = feature(primary=True)
    ...     balance: float
    ...     overdrawn: bool = feature(expression=_.balance < 0, description="below zero")
    >>> Account.__chalk_class__.primary_key.name
    'number'
    >>> Account.__chalk_class__.features[2].expression
    '(_.balance < 0)'
    """
    return _FeatureOptions(description, primary, expression, max_staleness)


@overload
def features(cls: T) -> T: ...


@overload
def features(cls: None = None) -> Callable[[T], T]: ...


def features(cls: T | None = None) -> T | Callable[[T], T]:
    """Make a class's annotated attributes features; written ``@features`` or ``@features()``.

    Each attribute becomes a ``FeatureReference`` (``Document.text``), the class keeps its
    ``ClassDef`` in ``__chalk_class__``, and ``graph_of`` finds it.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _, features
    >>> @features
    ... class Document:
    ...     id: int
    ...     text: str
    ...     entities: str = F.catalog_call("model.ner", _.text)
    >>> str(Document.entities)
    'document.entities'
    >>> [(f.name, f.expression) for f in Document.__chalk_class__.features]
    [('id', None), ('text', None), ('entities', 'catalog_call("model.ner", _.text)')]
    """
    if cls is None:
        return _decorate
    return _decorate(cls)


def namespace_of(class_name: str) -> str:
    """The namespace of a class: its name in snake_case.

    Examples
    --------
    >>> namespace_of("Document"), namespace_of("HTTPRequest"), namespace_of("UserProfile")
    ('document', 'http_request', 'user_profile')
    """
    words = _LOWER_UPPER.sub(r"\1_\2", _WORD_START.sub(r"\1_\2", class_name))
    return re.sub(r"_+", "_", words).lower()


def graph_for(namespaces: Iterable[str]) -> FeatureGraph:
    """The graph of the classes defining these namespaces (the latest definition of each).

    What an in-process query needs: the classes it names, even when the process has seen two
    classes with one namespace (a notebook redefining one, or tests).

    Examples
    --------
    >>> from chalk.features import _, features
    >>> @features
    ... class Ticket:
    ...     id: int
    ...     price: float
    >>> [c.name for c in graph_for(["ticket"]).classes]
    ['Ticket']
    """
    wanted = set(namespaces)
    latest: dict[str, type] = {}
    for cls in _REGISTRY.values():
        namespace = _class_def_of(cls).namespace
        if namespace in wanted:
            latest[namespace] = cls
    return graph_of(latest.values())


def graph_of(classes: Iterable[type] | None = None) -> FeatureGraph:
    """The feature graph of these ``@features`` classes, or of every one defined so far.

    Examples
    --------
    >>> from chalk.features import _, features
    >>> @features
    ... class Point:
    ...     id: int
    ...     x: float
    ...     double_x: float = _.x * 2
    >>> graph = graph_of([Point])
    >>> graph.feature("point.double_x").expression
    '(_.x * 2)'
    """
    chosen = list(_REGISTRY.values()) if classes is None else list(dict.fromkeys(classes))
    clashes = namespace_clashes(chosen)
    if clashes:
        raise FeatureClassError(clashes[0])
    return FeatureGraph.from_classes(_class_def_of(cls) for cls in chosen)


def feature_classes() -> list[type]:
    """Every ``@features`` class this process has defined (the latest under each name).

    Examples
    --------
    >>> from chalk.features import features
    >>> @features
    ... class Parcel:
    ...     id: int
    >>> Parcel in feature_classes()
    True
    """
    return list(_REGISTRY.values())


def namespace_clashes(classes: Iterable[type]) -> list[str]:
    """One message for each class that shares its namespace with an earlier one of ``classes``.

    Examples
    --------
    >>> from chalk.features import features
    >>> @features
    ... class Cart:
    ...     id: int
    >>> namespace_clashes([Cart])
    []
    """
    first_of: dict[str, type] = {}
    messages = []
    for cls in dict.fromkeys(classes):
        earlier = first_of.setdefault(_class_def_of(cls).namespace, cls)
        if earlier is not cls:
            messages.append(_shared_namespace_message(earlier, cls))
    return messages


def _decorate(cls: T) -> T:
    source, lines = _source_of(cls)
    namespace = namespace_of(cls.__name__)
    hints = _own_features(cls, _type_hints(cls, source))
    names = list(hints)
    defs = tuple(
        _feature_def(cls, name, hint, namespace, lines.get(name, source), names)
        for name, hint in hints.items()
    )
    defs = _with_primary_key(cls.__name__, defs, source)
    for definition in defs:
        reference = FeatureReference(
            namespace, definition.name, definition.arrow_type, definition.nullable
        )
        setattr(cls, definition.name, reference)
    setattr(cls, _CLASS_ATTRIBUTE, ClassDef(cls.__name__, namespace, defs, source))
    _REGISTRY[(cls.__module__, cls.__qualname__)] = cls
    return cls


def _source_of(cls: type) -> tuple[str, dict[str, str]]:
    """``file:line`` of the class statement, and of each annotated attribute by name.

    The module name stands for the file where the source is not at hand.
    """
    try:
        path = inspect.getsourcefile(cls) or inspect.getfile(cls)
    except (OSError, TypeError):  # defined at a prompt, in `python -c` or a notebook
        return cls.__module__, {}
    try:
        text, first = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return path, {}
    lines = {name: f"{path}:{first + offset}" for name, offset in _attribute_offsets(text)}
    return f"{path}:{first}", lines


def _attribute_offsets(text: list[str]) -> Iterator[tuple[str, int]]:
    """Each ``name: type`` statement of the class body in ``text``, with its offset in lines."""
    try:
        tree = ast.parse(textwrap.dedent("".join(text)))
    except SyntaxError:  # the source on disk changed since the class was defined
        return
    body = next((node for node in tree.body if isinstance(node, ast.ClassDef)), None)
    for node in body.body if body is not None else ():
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node.lineno - 1


def _type_hints(cls: type, source: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as error:
        name = _first_unresolvable(cls)
        message = (
            f"{cls.__name__}.{name} at {source} has an annotation that cannot be resolved "
            f"({error}): expected a type visible at the module level of the class"
        )
        raise FeatureClassError(message) from error


def _first_unresolvable(cls: type) -> str:
    """The first annotation ``get_type_hints`` fails on, to name it in the error."""
    for name, annotation in inspect.get_annotations(cls).items():
        # A class holding this one annotation, resolved in the same module and class scope.
        probe = type(cls.__name__, (), {"__annotations__": {name: annotation}})
        probe.__module__ = cls.__module__
        try:
            typing.get_type_hints(probe, localns=dict(vars(cls)))
        except Exception:
            return str(name)
    return "<annotation>"


def _own_features(cls: type, hints: Mapping[str, Any]) -> dict[str, Any]:
    """The class's own annotated attributes, in order, without ``ClassVar`` ones."""
    own = inspect.get_annotations(cls)
    return {
        name: hints[name]
        for name in own
        if name in hints and typing.get_origin(hints[name]) is not ClassVar
    }


def _feature_def(
    cls: type, name: str, hint: Any, namespace: str, source: str, names: list[str]
) -> FeatureDef:
    where = f"{cls.__name__}.{name} at {source}"
    try:
        arrow_type, nullable = arrow_type_of(hint)
    except FeatureTypeError as error:
        raise FeatureClassError(f"{where} has no feature type: {error}") from error
    options = _options_of(cls.__dict__.get(name), where)
    expression = None
    if options.expression is not None:
        node = _node_of(options.expression, where)
        _check_references(cls.__name__, name, node, names, source)
        expression = repr(node)
    try:
        max_staleness_s = max_staleness_seconds(options.max_staleness)
    except StalenessError as error:
        raise FeatureClassError(
            f"{where} has max_staleness={options.max_staleness!r}: {error}"
        ) from None
    return FeatureDef(
        namespace=namespace,
        name=name,
        arrow_type=arrow_type,
        nullable=nullable,
        primary=options.primary,
        expression=expression,
        description=options.description,
        source=source,
        max_staleness_s=max_staleness_s,
    )


def _options_of(default: Any, where: str) -> _FeatureOptions:
    if default is None:
        return _FeatureOptions(None, False, None)
    if isinstance(default, _FeatureOptions):
        return default
    if isinstance(default, Deferred | Expr):
        return _FeatureOptions(None, False, default)
    raise FeatureClassError(
        f"{where} has the default {default!r}: expected an expression built from _ and F, "
        f"or feature(...); features take no default values"
    )


def _node_of(expression: Deferred | Expr, where: str) -> Expr:
    if not isinstance(expression, Deferred | Expr):
        raise FeatureClassError(
            f"{where} has expression={expression!r}: expected an expression built from _ "
            f"and F, got {type(expression).__name__}"
        )
    try:
        return node_of(expression)
    except ExpressionError as error:
        raise FeatureClassError(f"{where}: {error}") from error


def _with_primary_key(
    class_name: str, defs: tuple[FeatureDef, ...], source: str
) -> tuple[FeatureDef, ...]:
    """The features with exactly one marked primary: the one marked, else ``id``."""
    marked = [d.name for d in defs if d.primary]
    if len(marked) > 1:
        raise FeatureClassError(
            f"{class_name} at {source} has more than one primary key: expected one "
            f"feature(primary=True), got {', '.join(marked)}"
        )
    key = marked[0] if marked else "id" if any(d.name == "id" for d in defs) else None
    if key is None:
        raise FeatureClassError(
            f"{class_name} at {source} has no primary key: expected a feature named id or one "
            f"marked primary; add `id: int`, or mark the key with `= feature(primary=True)`"
        )
    primary = next(d for d in defs if d.name == key)
    if primary.expression is not None or primary.nullable:
        raise FeatureClassError(
            f"{class_name}.{key} at {source} is the primary key: expected an input that is "
            f"never None, got {'an expression' if primary.expression else 'an Optional type'}"
        )
    return tuple(replace(d, primary=True) if d.name == key else d for d in defs)


def _check_references(
    class_name: str, name: str, node: Expr, names: list[str], source: str
) -> None:
    unknown = sorted(features_used(node) - set(names))
    if unknown:
        raise FeatureClassError(
            f"{class_name}.{name} at {source} uses "
            f"{', '.join(f'_.{ref}' for ref in unknown)}, which {class_name} does not have: "
            f"expected features of {class_name} ({', '.join(names)})"
        )


def _class_def_of(cls: type) -> ClassDef:
    # Read from the class itself: a subclass of a feature class is not one until decorated.
    class_def = vars(cls).get(_CLASS_ATTRIBUTE) if isinstance(cls, type) else None
    if not isinstance(class_def, ClassDef):
        raise FeatureClassError(
            f"{getattr(cls, '__qualname__', cls)!r} is not a feature class: expected a class "
            f"decorated with @features"
        )
    return class_def


def _shared_namespace_message(earlier: type, later: type) -> str:
    first, second = _class_def_of(earlier), _class_def_of(later)
    return (
        f"two feature classes share the namespace {first.namespace!r}: "
        f"{earlier.__module__}.{earlier.__qualname__} at {first.source} and "
        f"{later.__module__}.{later.__qualname__} at {second.source}; "
        f"expected one class per namespace: rename one of them"
    )
