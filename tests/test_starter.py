import pytest

from autograder import starter


def test_committed_starter_matches_the_reference(transformer):
    assert starter.stale(transformer) == [], "run `make starter`"


def test_indented_region_becomes_raise_named_after_its_function():
    source = '''class A:
    def f(self, x):
        """Doc."""
        # BEGIN SOLUTION
        return x + 1
        # END SOLUTION
'''
    assert starter.strip_solutions(source) == '''class A:
    def f(self, x):
        """Doc."""
        raise NotImplementedError("A.f: not implemented yet")
'''


def test_top_level_region_is_dropped():
    source = "import math\n\n# BEGIN SOLUTION\ndef _helper():\n    return 1\n# END SOLUTION\n\n\ndef g():\n    pass\n"
    assert starter.strip_solutions(source) == "import math\n\ndef g():\n    pass\n"


@pytest.mark.parametrize("source", [
    "def f():\n    # BEGIN SOLUTION\n    return 1\n",
    "def f():\n    return 1\n    # END SOLUTION\n",
    "def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    # END SOLUTION\n",
])
def test_unbalanced_markers(source):
    with pytest.raises(starter.MarkerError):
        starter.strip_solutions(source)


def test_no_solution_left_in_the_starter(transformer):
    for text in starter.generate(transformer).values():
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert "NotImplementedError" in text
