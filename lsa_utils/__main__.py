"""`python -m lsa_utils`: run the study's notebooks (see `lsa_utils.infra.runner`), after checking that
every model and data set the profile names can be had."""

import sys

from lsa_utils.infra.runner import main
from lsa_utils.models.loading import check_sources

sys.exit(main(check_sources=check_sources))
