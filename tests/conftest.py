"""Shared test setup: the suite never touches the network, so the HF libraries are told so up front."""

import os

# Set at import, before any test module imports transformers or datasets (they read these once).
os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
