"""The engine: expression grammar, planner, vectorised executor, model calls (catalog_call
through ``Catalog.resolve`` and the runtime client) and queries, all on the serialised feature
graph, never on user code.
"""

from __future__ import annotations
