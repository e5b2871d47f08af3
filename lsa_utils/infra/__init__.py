"""Stage 1, infrastructure: paths, devices, cache keys and atomic writes, outputs, profiles, the runner.

Nothing here knows about models or tasks; every later stage may use it.
"""
