"""``chalk serve``: the HTTP feature server (online queries, model invoke, probes, metrics).

Only the CLI imports it; docs/architecture.md says how it fits.
"""

from __future__ import annotations

from chalk.server.settings import ServerSettings, ServerSettingsError

__all__ = ["ServerSettings", "ServerSettingsError"]
