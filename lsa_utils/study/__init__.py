"""Stage 8, the study: every method behind one call, the grid of runs, statistics, analyses, report, plots.

`methods` gives every method the same data, trainer and budget; `grid` runs (method, task, seed) and the
ablations, each run cached; `analysis` and `cka` hold the measurements of notebooks 01-03; `stats`,
`report` and `plots` turn tables into intervals, `results/REPORT.md` and figures. `stats` and `report`
load no torch, so the report notebook starts in a second.
"""
