"""Developer tooling for the0-k8s (not shipped in the image)."""
