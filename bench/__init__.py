"""The YADTQ benchmark: `python -m bench` (or `make bench`); see docs/BENCHMARKS.md.

Measures, in one run on one machine, raw kafka-python (the limit), YADTQ with
1..8 workers, and Celery and Huey as anchors, and writes a table, the raw
numbers as JSON and a plot. Only for `.venv-bench`: nothing in YADTQ imports it.
"""
