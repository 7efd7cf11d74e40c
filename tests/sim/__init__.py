"""The cluster simulator: real nodes over a simulated network, in virtual time.

Test machinery, beside the library and not in it (nothing under `src/geocache` imports
it): `cluster.py` builds real `Node`s from parts it passes in (a store it observes, peer
connections over `wire.py`'s simulated network, a clock that follows `loop.py`'s virtual
time, a seeded random source) and drives them through their public seams. `fakes.py`
holds scripted peers for unit tests of one cluster part alone.
"""
