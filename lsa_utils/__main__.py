"""`python -m lsa_utils`: run the study's notebooks (see `lsa_utils.infra.runner`)."""

import sys

from lsa_utils.infra.runner import main

sys.exit(main())
