"""Read-through origins: what a node calls on a miss (the `Fill` types are in fill.py)."""
