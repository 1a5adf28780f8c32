"""Grading inside the test process: the grading half of the pytest plugin, the reference, isolation,
forbidden calls, time limits, and naming a wrong result's mistake (diagnosis). Never shipped to students."""
