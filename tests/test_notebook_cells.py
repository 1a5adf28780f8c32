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
    same = notebook.assemble([cells[2], cells[2], cells[2]])   # a cell copied or run again, unchanged: no note
    assert same.notes == [] and run(same.files["one.py"])["f"]() == 2


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


def test_a_marker_under_a_cell_magic_marks_the_cell():
    """`%%time` must open its cell: a student timing a graded cell on Colab (no tags) writes the
    marker on the second line; the cell still counts, and the magic becomes `pass`."""
    cell = code("%%time\n# file: one.py\ndef f():\n    return 5\n")
    assert notebook.cell_file(cell) == "one.py"
    built = notebook.assemble([cell])
    assert run(built.files["one.py"])["f"]() == 5
    assert notebook.cell_file(code("x = 1\n# file: one.py\ndef f(): pass")) is None   # only under a magic


def test_a_cell_merging_cells_of_two_files_is_cut_at_the_second_marker():
    """Jupyter's *Merge cells* keeps the first cell's tag: the code after the second file's marker
    belongs to that file, as it did before the merge. A marker inside a function or a string does not cut."""
    merged = ("# file: one.py\ndef f():\n    return 1\n\n# file: two.py\nimport math\n\n"
              "def g():\n    s = '''\n# file: one.py\n'''\n    return math.pi\n")
    built = notebook.assemble([code(merged, "file:one.py"), code("# file: two.py\nh = g()")])
    assert built.files["one.py"] == "# file: one.py\ndef f():\n    return 1\n"
    assert run(built.files["two.py"])["h"] == run("import math\nh = math.pi")["h"]
    assert built.cells == {"one.py": [0], "two.py": [0, 1]}
    kept = "# file: one.py\ndef f():\n# file: two.py\n    return 1\n"
    assert notebook.assemble([code(kept)]).files == {"one.py": kept}
    assert notebook.parts_of("# file: one.py\n# file: two.py\nx = 1") == ["# file: one.py\n# file: two.py\nx = 1"]


def test_a_stub_cell_left_below_the_students_code_does_not_replace_it():
    """A student who writes a function in a new cell above the handout's stub and leaves the stub
    there would lose the problem to a placeholder: an untouched stub (only `raise NotImplementedError`,
    for a function or every method of a class) never replaces an earlier definition, and a note says so."""
    stub = '# file: one.py\ndef f():\n    """Doc."""\n    raise NotImplementedError("f: not implemented yet")\n'
    stub_class = "# file: one.py\nclass C:\n    def m(self):\n        raise NotImplementedError\n"
    cells = [code("def f():\n    return 1\n\n\nclass C:\n    def m(self):\n        return 2", "file:one.py"),
             code(stub), code(stub_class)]
    built = notebook.assemble(cells)
    namespace = run(built.files["one.py"])
    assert namespace["f"]() == 1 and namespace["C"]().m() == 2
    assert notebook.STUB_LEFT.format(cell=2, names="f", file="one.py") in built.notes
    assert built.cells == {"one.py": [0]}
    # a stub first, the student's code below it: the later definition counts, as always
    assert run(notebook.assemble([code(stub), cells[0]]).files["one.py"])["f"]() == 1
    # a cell that does more than stub out, or a stub of a name not defined yet, is kept
    assert "return 3" in notebook.assemble([cells[0], code(stub + "\n\ndef g():\n    return 3")]).files["one.py"]
    assert "NotImplementedError" in notebook.assemble([code(stub)]).files["one.py"]


def test_a_cell_meant_for_a_file_but_not_marked_says_how_to_mark_it():
    """On Colab (no tags) a near-miss marker line or a `%%writefile` cell leaves the code out of the
    file: the note names the cell and the exact line to write."""
    cells = [code("# File: one.py\ndef f(): pass"), code("# file: `one.py`  <- mine\ndef g(): pass"),
             code("%%writefile one.py\ndef h(): pass"), code("%%writefile -a src/one.py\ndef k(): pass"),
             code("# file: other.py\nx = 1"), code("# a file: plot\nplt.plot()")]
    built = notebook.assemble(cells, files=("one.py",))
    assert built.files == {} and built.untagged == [0, 1, 2, 3, 4, 5]
    assert built.notes[:4] == [
        notebook.NEAR_MARKER.format(cell=1, line="# File: one.py", file="one.py"),
        notebook.NEAR_MARKER.format(cell=2, line="# file: `one.py`  <- mine", file="one.py"),
        notebook.WRITEFILE.format(cell=3, file="one.py"), notebook.WRITEFILE.format(cell=4, file="one.py")]
    assert len(built.notes) == 5   # and the list of cells not graded: other.py is not asked for, cell 6 is no marker


def test_a_solution_written_in_an_unmarked_cell_is_named():
    """On Colab a student writes the function in a new cell under the handout's stub, without the marker:
    the stub is graded; a note names the cell. Exploration that defines nothing of a file's is not noted."""
    stub = '# file: one.py\ndef f():\n    raise NotImplementedError("f: not implemented yet")\n'
    cells = [code(stub), code("def f():\n    return 1"), code("def plot():\n    pass\nf()")]
    built = notebook.assemble(cells)
    assert notebook.UNMARKED.format(cell=2, names="f", file="one.py") in built.notes
    assert not any("plot" in note for note in built.notes)
    assert "NotImplementedError" in built.files["one.py"]


def test_an_imports_cell_moved_below_the_cells_using_it_is_graded_first():
    """The handout's imports cell moved below a function whose annotation needs `math`: the kernel ran it
    first (the student's checks passed), a file joined in notebook order would fail at import. Such a cell,
    only imports, goes to the top of the file, with a note; an imports cell nothing above uses stays put."""
    cells = [code("# file: one.py\ndef f(x: math.pi = 1):\n    return math.pi", "file:one.py"),
             code('# file: one.py\n"""The module."""\nimport math'),
             code("# file: one.py\nimport os\nimport sys")]
    built = notebook.assemble(cells)
    assert run(built.files["one.py"])["f"]() == run("import math")["math"].pi
    assert built.files["one.py"].index("import math") < built.files["one.py"].index("def f")
    assert built.files["one.py"].index("def f") < built.files["one.py"].index("import os")
    assert built.cells == {"one.py": [1, 0, 2]}
    assert built.notes == [notebook.HOISTED.format(cell=2, file="one.py")]
    bound = [code("# file: one.py\nimport math as m\nmath = m\ndef f():\n    return math.pi"), cells[1]]
    assert notebook.assemble(bound).cells == {"one.py": [0, 1]}   # bound above: the order is kept


def test_a_cell_holding_only_the_marker_is_named():
    """A cell split just below its marker line (Colab: no tags): the code went to an unmarked cell."""
    cells = [code("# file: one.py\n# my solution\n"), code("def f():\n    return 1"), code("# file: one.py\nx = 1")]
    built = notebook.assemble(cells)
    assert notebook.MARKER_ONLY.format(cell=1, file="one.py") in built.notes
    assert not any("cell 3 holds" in note for note in built.notes)
    split = [code("# file: one.py", "file:one.py"), code("def f():\n    return 1", "file:one.py")]   # tags kept
    assert notebook.assemble(split).notes == []
