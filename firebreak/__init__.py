"""The composition root: the `firebreak` command and the wiring it starts.

It sits above the layers it wires (handlers → bot → storage) and is the only
place that knows all of them.
"""
