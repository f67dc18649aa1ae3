"""The live incident room: Slack's events recorded as they happen, and the read-in."""
