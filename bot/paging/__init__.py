"""Paging (PagerDuty) and the public status page (Statuspage): settings, the gateways
the domain talks through, the durable delivery of outbound calls, and the service."""
