"""Helpers shared by integration and e2e tests (real servers only; no mocks)."""
