"""params.yaml as a whole: the algorithm's schema (config.py) plus each experiment's block, validated together.

    python -m ebm_repro.params     # regenerate workflow/schemas/params.schema.json
This module sits above both config.py (which knows no experiment) and experiments/.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ebm_repro import config as C
from ebm_repro.config import ConfigError
from ebm_repro.experiments import EXPERIMENTS

SCHEMA_PATH = C.REPO_ROOT / "workflow" / "schemas" / "params.schema.json"


def params_schema() -> dict:
    """JSON schema of params.yaml (written to workflow/schemas/): core + one block per experiment."""
    s = C.core_schema()
    for exp in EXPERIMENTS.values():
        s["properties"][exp.BLOCK] = exp.schema()
        s["required"].append(exp.BLOCK)
    return s


def _error_path(err: Any) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<top level>"


def validate_params(params: dict) -> None:
    """Validate raw params.yaml against the schema and every cross-key rule; raise ConfigError naming the key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(params_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {_error_path(e)}: {e.message}" for e in errors[:10]]
        raise ConfigError("params.yaml is invalid (fix these keys):\n" + "\n".join(lines))
    C.check_core(params)
    for exp in EXPERIMENTS.values():
        exp.check(params)


def load_params(path: str | Path = C.PARAMS_PATH) -> dict:
    """Read and validate params.yaml (default: the repository's)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found; run from the repository root or pass --params")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping at top level")
    validate_params(params)
    return params


def write_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(json.dumps(params_schema(), indent=1) + "\n")


if __name__ == "__main__":
    write_schema()
    print(f"wrote {SCHEMA_PATH}")
