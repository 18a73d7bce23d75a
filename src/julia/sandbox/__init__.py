"""Sandbox servers that speak external services' real wire protocols, for tests and demos."""
