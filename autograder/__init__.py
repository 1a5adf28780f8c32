"""Auto-grading harness for the transformer course: build Gradescope zips, grade submissions.

Run `python -m autograder --help`. The subpackage `autograder.testing` is what tests use
(the `student` adapter, comparisons, the pytest plugin); it ships to students with the
public tests, so it must not import anything else from this package.
"""
__version__ = "0.1.0"
