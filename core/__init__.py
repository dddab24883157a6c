"""Everloop core: what the API, workflows, activities and capabilities share."""

import os

__version__ = "0.1.0"

# litellm fetches its price table from the internet at import unless told to use its bundled copy;
# servers often have no route out, and a start-up must not wait on one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
