"""The `firebreak` command line, above everything it starts (app, devtools)."""
