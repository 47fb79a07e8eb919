"""The chaos suites users run as ``pytest suites/`` (a package, so its module names never clash with tests/)."""
