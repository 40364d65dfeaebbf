"""Fixtures for telemetry tests: moto in server mode (``moto_endpoint``) lives in
``tests/conftest.py``, shared with the cloud tests."""
