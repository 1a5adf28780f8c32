"""kit/notebook.py: which cells of a notebook make which submitted file (the convention shared by
the handout notebook's check cells and notebook submissions). Cells are plain nbformat 4 dicts."""
from autograder.kit import notebook


def code(source, *tags):
    return {"cell_type": "code", "metadata": {"tags": list(tags)} if tags else {}, "source": source,
            "outputs": [], "execution_count": None}


def markdown(source, *tags):
    return {"cell_type": "markdown", "metadata": {"tags": list(tags)} if tags else {}, "source": source}


def run(code_text: str) -> dict:
    """The names a rebuilt file defines, once run."""
    namespace: dict = {}
    exec(compile(code_text, "<rebuilt>", "exec"), namespace)
    return namespace


def test_a_tag_or_a_first_line_marker_gives_a_cell_its_file_in_notebook_order():
    cells = [code("a = 1", "file:one.py"),
             code("# file: two.py\nb = 2"),
             code("\n\n#file:one.py\nc = a + 1"),               # blank lines before the marker
             code("x = 0\n# file: one.py"),                      # a marker that is not the first line
             markdown("# file: one.py\nnot code")]
    built = notebook.assemble(cells)
    assert built.files == {"one.py": "a = 1\n\n\n\n\n#file:one.py\nc = a + 1\n", "two.py": "# file: two.py\nb = 2\n"}
    assert built.cells == {"one.py": [0, 2], "two.py": [1]}
    assert built.untagged == [3]
    assert run(built.files["one.py"])["c"] == 2


def test_source_stored_as_a_list_of_lines_reads_the_same():
    cells = [code(["def f():\n", "    return 3\n"], "file:one.py")]
    assert notebook.assemble(cells).files == {"one.py": "def f():\n    return 3\n"}


def test_only_the_files_asked_for_count_the_others_cells_are_untagged():
    cells = [code("a = 1", "file:one.py"), code("b = 2", "file:notes.py"), code("print(a)")]
    built = notebook.assemble(cells, files=("one.py",))
    assert list(built.files) == ["one.py"]
    assert built.untagged == [1, 2]
    assert notebook.UNTAGGED.format(cells="2, 3") in built.notes   # numbered from 1, as a student counts


def test_ipython_lines_become_pass_keeping_the_block_valid_and_are_listed():
    source = "%matplotlib inline\ndef f():\n    !pip install tqdm\n    files = !ls\n    return 4\n"
    built = notebook.assemble([code(source, "file:one.py")])
    assert run(built.files["one.py"])["f"]() == 4
    assert built.files["one.py"].count("pass  # removed: IPython line") == 3
    assert [n for n in built.notes if "removed the IPython line" in n] == [
        notebook.REMOVED_LINE.format(cell=1, line=line) for line in ("%matplotlib inline", "!pip install tqdm",
                                                                     "files = !ls")]


def test_python_that_looks_like_ipython_is_kept_whole():
    source = ('def f(a, b):\n    """Checks\n!important: a docstring line\n    """\n    r = (a\n         % b)\n'
              '    same = (a\n            != b)\n    return r, same\n')
    built = notebook.assemble([code(source, "file:one.py")])
    assert built.files["one.py"] == source
    assert not built.notes
    assert run(built.files["one.py"])["f"](7, 4) == (3, True)


def test_a_non_python_cell_magic_drops_the_cell_a_timing_magic_keeps_its_body():
    cells = [code("%%bash\necho hi > /tmp/x", "file:one.py"),
             code("%%time\nvalue = 5", "file:one.py")]
    built = notebook.assemble(cells)
    assert run(built.files["one.py"])["value"] == 5
    assert "echo" not in built.files["one.py"]
    assert notebook.REMOVED_CELL.format(cell=1, magic="bash", file="one.py") in built.notes
    assert built.cells == {"one.py": [1]}


def test_a_function_defined_in_two_cells_is_noted_and_the_last_one_counts():
    cells = [code("def f():\n    return 1", "file:one.py"), code("print('try')"),
             code("def f():\n    return 2", "file:one.py")]
    built = notebook.assemble(cells)
    assert notebook.DUPLICATE.format(name="f", cells="1, 3", file="one.py") in built.notes
    assert run(built.files["one.py"])["f"]() == 2


def test_answer_cells_by_tag_or_marker_are_kept_without_the_marker():
    cells = [markdown("Scaling keeps the softmax soft.", "answer:why_scale"),
             markdown("<!-- answer: why_mask -->\nThe future is hidden."),
             markdown("<!-- answer: why_mask -->\nSecond part."),
             markdown("Just notes."),
             code("<!-- answer: nope -->")]
    built = notebook.assemble(cells)
    assert built.answers == {"why_scale": "Scaling keeps the softmax soft.",
                             "why_mask": "The future is hidden.\n\nSecond part."}
    assert built.files == {} and built.untagged == [4]


def test_hostile_cells_do_not_crash_assembly():
    cells = [code("x = 1\x00\n%pip install y", "file:one.py"), code(None, "file:one.py"),
             {"cell_type": "code", "metadata": {"tags": "file:one.py"}, "source": "z = 3"},  # tags not a list
             {"cell_type": "raw", "source": "# file: one.py"}]
    built = notebook.assemble(cells)
    assert built.files["one.py"] == "x = 1\x00\npass  # removed: IPython line\n\n\n\n"   # no "None"
    assert built.untagged == [2]   # tags that are not a list are no tags


def test_cell_numbers_read_as_ranges_and_stay_short():
    assert notebook.cell_numbers([3, 5, 6, 7, 8, 9, 11, 12]) == "3, 5-9, 11, 12"
    assert notebook.cell_numbers(list(range(1, 10_001, 2)), limit=3) == "1, 3, 5 and 4997 more"
    built = notebook.assemble([code("x = 1")] * 5 + [code("y = 2", "file:one.py")] + [code("z = 3")] * 2)
    assert notebook.UNTAGGED.format(cells="1-5, 7, 8") in built.notes
