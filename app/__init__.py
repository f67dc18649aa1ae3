"""The composition root: app.wiring builds the running app from settings.

It sits above the layers it wires (handlers → bot → storage) and is the only
place that knows all of them; `firebreak serve`, the dev tools and the tests
start the bot through it.
"""
