"""Particle-dynamics (E10) config; owned by the particle module."""


def particle_schema() -> dict:
    """JSON schema of params.yaml's `particle:` section."""
    return {"type": "object"}
