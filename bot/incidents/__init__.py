"""The incident domain: lifecycle rules, the service (single changes) and flows (sagas)."""
