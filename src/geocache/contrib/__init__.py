"""Integrations with other libraries: each module imports its library, which the caller
installs (geocache does not depend on them): `django` (a cache backend), `aiocache`."""
