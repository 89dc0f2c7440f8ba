"""A cached call's two halves joined: the answers the store found and those the model gave for
the rest, back in the order of the call's distinct argument rows; and whether a route's answers
may be kept under a scope. ``ModelCaller`` uses them.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from chalk.catalog.records import Route
from chalk.engine.cache.store import AnswerScope, Lookup

__all__ = ["answered_by", "joined_answers", "missed_rows"]


def answered_by(route: Route, scope: AnswerScope) -> bool:
    """Whether answers sent on ``route`` came from the scope's model version: every ready
    endpoint of the route is known to run it (``Route.settled``). Mid-roll the old version's
    replicas still answer while the route names the new one: their answers are not its; nor
    are those of the same name and version registered again meanwhile (another digest)."""
    return route.settled and (route.model_name, route.model_version, route.version_digest) == (
        scope.model,
        scope.version,
        scope.identity,
    )


def missed_rows(lookup: Lookup) -> pa.Array:
    """The positions of the keys the store did not answer, in order.

    Examples
    --------
    >>> missed_rows(Lookup(pa.array([True, False, False]), pa.array([1]))).to_pylist()
    [1, 2]
    """
    return pc.indices_nonzero(pc.invert(lookup.found))


def joined_answers(lookup: Lookup, sent: pa.Array) -> pa.Array:
    """One answer per key of ``lookup``: the store's where it found one, else the next of
    ``sent`` (the model's answers to ``missed_rows``, in order).

    Examples
    --------
    >>> lookup = Lookup(pa.array([True, False, True, False]), pa.array(["a", "c"]))
    >>> joined_answers(lookup, pa.array(["B", None])).to_pylist()
    ['a', 'B', 'c', None]
    """
    found = lookup.found
    hits = lookup.answers
    if hits.type != sent.type:
        hits = hits.cast(sent.type)
    if len(sent) == 0:
        return hits
    if len(hits) == 0:
        return sent
    found_count = pc.cumulative_sum(found.cast(pa.int64()))
    missed_count = pc.cumulative_sum(pc.invert(found).cast(pa.int64()))
    # Hits first, then the model's answers: a found key takes its rank among the found, a
    # missed one its rank among the missed, after every hit.
    position = pc.if_else(
        found,
        pc.subtract(found_count, 1),
        pc.add(missed_count, len(hits) - 1),
    )
    return pa.concat_arrays([hits, sent]).take(position)
