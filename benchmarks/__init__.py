"""Benchmarks of twilio_numbers_async: run them with ``python -m benchmarks.run``."""
