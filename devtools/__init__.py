"""Developer tools: `firebreak shell` and `firebreak demo` in a terminal, no Slack needed.

They drive the real app (app.wiring) through the Slack emulator, so they sit
above everything they start; nothing in handlers/, bot/ or storage/ imports them.
"""
