"""Test support shared by the whole suite: real registries (support.registry) and test images
(support.testimages). Registered as pytest plugins in tests/conftest.py, so its session fixtures
(`registry`, `registry_tls`, `registry_token`, `seeded_registry`, `test_images`, ...) exist everywhere.

Import as ``from support import testimages`` (tests/ is on sys.path under pytest's rootdir conftest).
"""
