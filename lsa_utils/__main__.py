"""`python -m lsa_utils`: run the study's notebooks (see `lsa_utils.infra.runner`), after checking that the
profile fits the notebooks' parameters, that every model and data set it names can be had, and that the
sandbox its notebooks run generated code in works here."""

import sys

from lsa_utils.evaluation.sandbox.isolation import check_isolation
from lsa_utils.infra.runner import main
from lsa_utils.models.loading import check_sources
from lsa_utils.study.profile_schema import check_profile

sys.exit(main(check_sources=check_sources, check_profile=check_profile, check_sandbox=check_isolation))
