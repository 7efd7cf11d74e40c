"""Run Django's own cache backend tests against GeocacheCache on a node (a subprocess).

`python django_suite.py TESTS_DIR SEED`: TESTS_DIR holds Django's `cache` test app
(tests/cache of Django's sdist: its `BaseCacheTests` are the cases every backend passes,
and its models need a database, here SQLite in memory). The class run here is what
Django's own `RedisCacheTests` is: those cases, less culling (a MAX_ENTRIES option that
a shared network cache does not have), with the client's CommandError as the error of
`incr` on a value that is not an integer, as Redis's backend has redis-py's.

Django's settings are global to a process and its test runner sets up its own
environment and database, so this runs apart from pytest (test_django.py starts it).
The last line says `N passed, N failed, N skipped`; the exit status is 0 when all passed.
"""

from __future__ import annotations

import sys
import unittest


def main(tests_dir: str, seed: str) -> int:
    sys.path.insert(0, tests_dir)  # the `cache` app: Django's tests import it by that name
    import django
    from django.conf import settings

    backend = {"BACKEND": "geocache.contrib.django.GeocacheCache", "LOCATION": seed}
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        CACHES={"default": backend},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        SECRET_KEY="geocache tests",
        USE_TZ=True,
    )
    django.setup()

    from cache.tests import BaseCacheTests, caches_setting_for_tests
    from django.test import TestCase, override_settings
    from django.test.runner import DiscoverRunner

    from geocache.client.errors import CommandError

    @override_settings(CACHES=caches_setting_for_tests(base=backend, exclude={"cull", "zero_cull"}))
    class GeocacheCacheTests(BaseCacheTests, TestCase):  # type: ignore[misc]
        incr_decr_type_error = CommandError

    runner = DiscoverRunner(verbosity=2)
    runner.setup_test_environment()
    databases = runner.setup_databases()
    try:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(GeocacheCacheTests)
        result = runner.run_suite(suite)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    # A case with subtests may fail several times: count cases, not failures.
    bad = [test for test, _ in result.failures + result.errors]
    failed = len({getattr(test, "test_case", test).id() for test in bad})
    failed += len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    print(f"{result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
