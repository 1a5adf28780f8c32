#!/usr/bin/env python3
"""Run the public tests on the files in this folder:  python run_tests.py

Extra arguments go to pytest, e.g. `python run_tests.py -k causal` or `-x` to stop at
the first failure. Hidden tests are run by the autograder only.
"""
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(pytest.main([str(HERE / "tests"), "--rootdir", str(HERE), "-p", "no:cacheprovider", "-p", "no:logging",
                          *sys.argv[1:]]))
