#!/usr/bin/env python3
"""Run the public tests on the files in this folder:  python run_tests.py

    python run_tests.py                          every public test, in the handout's order
    python run_tests.py --problem softmax        one problem's tests (repeat --problem for more)
    python run_tests.py -k softmax -x            pytest's options work too: -k matches problem names
    python run_tests.py tests/test_model.py      one test file, or one test: tests/test_model.py::test_name

Every run ends with a table: each problem, its public tests passed and the points they earn.
Hidden tests are run by the autograder only, after you submit.
"""
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
# The tests use small tensors: one thread is faster than many (measured, see the course README).
THREADS = "1"
# pytest options whose next argument is a value, not a file to test.
TAKES_VALUE = {"-k", "-m", "-p", "-c", "-o", "-W", "--problem", "--tb", "--rootdir", "--maxfail", "--deselect",
               "--ignore", "--ignore-glob", "--durations", "--timeout", "--confcutdir", "--basetemp", "-r"}


def test_paths(args: list[str]) -> list[int]:
    """Positions of the arguments that name test files, folders or test ids (pytest's positional ones)."""
    found, after_option = [], False
    for k, arg in enumerate(args):
        if after_option:
            after_option = False
        elif arg.startswith("-"):
            after_option = arg in TAKES_VALUE
        else:
            found.append(k)
    return found


def resolve(arg: str) -> str:
    """A test path as given from here, from this folder, or by its file name in tests/."""
    path, sep, rest = arg.partition("::")
    for candidate in (pathlib.Path(path), HERE / path, HERE / "tests" / path):
        if candidate.exists():
            return str(candidate.resolve()) + sep + rest
    return arg  # pytest says it is not found


def pytest_args(argv: list[str]) -> list[str]:
    args = list(argv)
    positions = test_paths(args)
    for k in positions:
        args[k] = resolve(args[k])
    if not positions:
        args.insert(0, str(HERE / "tests"))
    return ["--rootdir", str(HERE), "-p", "no:cacheprovider", "-p", "no:logging", *args]


def main(argv: list[str]) -> int:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, THREADS)
    sys.path.insert(0, str(HERE))
    import pytest

    return pytest.main(pytest_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
