"""The project's own container image, built from its Dockerfile without a registry (build.py)."""
