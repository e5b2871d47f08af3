"""Where the study's folders are, found from the package so no command depends on the working directory."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_DIR.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
RESULTS_DIR = REPO_ROOT / "results"
STAGING = "LSA_STAGING"  # JSON {"results": folder, "staging": folder}: where a running notebook writes (outputs)
