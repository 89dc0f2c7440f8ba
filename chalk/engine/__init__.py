"""The engine: expression grammar, planner and vectorised executor, working on the serialised
feature graph (never on user code). Model calls and queries arrive with their issue.
"""

from __future__ import annotations
