"""The post-mortem: read the channel and the event log, compile, render, export.

`service.PostmortemService` is the entry point (preview, close, export,
resume, CLI rendering); the other modules are its steps.
"""
