"""The Slack layer: Bolt listeners, the slack_sdk gateway, and the HTTP app.

Listeners parse the payload, ack, call one service method and render the
reply. Nothing else lives here.
"""
