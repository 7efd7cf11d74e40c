"""Fault tests: nodes in their own network namespaces, faults injected, a checker after.

See runner.py for how one schedule runs, checker.py for what is checked, and
scripts/soak.py for random schedules.
"""
