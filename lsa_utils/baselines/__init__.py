"""Stage 6, baselines: the parametric transfer methods SemAlign is compared with, Seeking and LaTen."""
