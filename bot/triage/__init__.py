"""Triage at declare: the likely scenario and service, its checklist and diagnostics.

`scenarios` loads `runbooks/scenarios/*.yml`; `matching` is the pure, explainable
guess; `service` records it with the declaration and runs the diagnostics as the
declare saga's last step; `views` renders what the channel sees.
"""

from bot.triage.matching import Guess, guess
from bot.triage.scenarios import Scenario, ScenarioCatalog, load_scenarios

__all__ = ["Guess", "Scenario", "ScenarioCatalog", "guess", "load_scenarios"]
