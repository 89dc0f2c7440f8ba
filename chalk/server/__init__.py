"""``chalk serve``: the HTTP feature server (online queries, model invoke, probes, metrics).

Only the CLI imports it; see DESIGN.md's "Seams of the second wave" for its contracts.
"""

from __future__ import annotations

from chalk.server.settings import ServerSettings, ServerSettingsError

__all__ = ["ServerSettings", "ServerSettingsError"]
