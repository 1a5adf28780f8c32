"""Auto-grading harness for the transformer course: build Gradescope zips, grade submissions.

Run `python -m autograder --help`. Each subpackage's name says where its code runs:
`kit/` is what tests use (the `student` adapter, comparisons, the pytest plugin) and ships
to students, so it imports nothing else of this package; `grader/` is grading inside the
test process; `sandbox/` runs student code in a worker process. tests/test_layout.py
enforces the import rules.
"""
__version__ = "0.1.0"
