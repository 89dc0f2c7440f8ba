"""The engine: expression grammar, planner, vectorised executor, model calls (catalog_call
through ``Catalog.resolve`` and the runtime client) and queries, all on the serialised feature
graph, never on user code.
"""

# The modules, roughly in the order a query meets them. They import one another without a
# circle (tests/test_import_rule.py checks that):
#   query        run_query: inputs in, requested features out (ChalkClient, chalk query)
#   parse        expression text -> nodes (grammar.lark)
#   plan         which steps compute the outputs from the inputs; the plan cache
#   execute      runs a plan over Arrow columns (execute_async: on an event loop); model_calls
#                finds a node's catalog_calls
#   model_requests  the executor's model calls as yielded requests; the blocking and awaiting
#                drivers that answer them
#   arrow_steps  steps that only move columns, evaluated on Arrow without polars
#   compiler     one expression node -> a typed polars expression; type checks without data
#   arrow_types  the Arrow type rules, one copy each (predicates, safe casts, type_text)
#   errors       EngineError and the model call errors
#   validate     chalk apply's checks of a whole graph
# Model calls:
#   calls        ModelCaller: resolve, cast, chunk, dispatch, re-join
#   routes       RouteCache: a group's route through the catalog, reused for a second
#   holds        HeldCalls: calls waiting for a group with no ready replica, and their bounds
#   addresses    AddressCounts: the addresses behind dns: endpoints (slots, a Service at zero)
#   demand       DemandPublisher: the caller's demand per local group, written to the catalog
#   call_schema  arguments as the model's input_schema, answers as its output_schema
#   chunking     ChunkLimits: how a call's rows are cut into chunks
#   dispatch     Dispatcher: chunks to replicas, rounds, retries and back-off
#   model_call   one call in progress (ModelCall, Chunk) and the errors that name it
#   recorder     CallRecorder: what a query's calls did, per scaling group
#   event_loop   EventLoopThread and blocking waits that see Ctrl-C

from __future__ import annotations
