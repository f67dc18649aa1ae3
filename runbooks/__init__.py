"""Bundled runbooks: severities, checklists, actions, targets and templates (data, not code).

Shipped as package data so `firebreak` finds them after `pip install`;
`FIREBREAK_RUNBOOKS` points at an operator's own copy instead.
"""

from pathlib import Path

BUNDLED = Path(__file__).parent
