"""Runbook actions: the catalog of diagnostics and mitigations, and running them.

Entry points: `load_catalog` (start-up and `firebreak check`), `Executors` (the
three executors, built by the app factory) and `ActionService`.
"""

from bot.actions.catalog import ActionCatalog, load_catalog
from bot.actions.params import Executors
from bot.actions.service import ActionService

__all__ = ["ActionCatalog", "ActionService", "Executors", "load_catalog"]
