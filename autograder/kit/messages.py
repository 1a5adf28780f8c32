"""Student-facing messages, as constants that tests import."""

TIMEOUT = "Timed out after {seconds:g} s: look for an endless loop, or work that grows too fast with the input."
CRASH = ("The test process died while running this test ({how}). Grading went on with the other tests; "
         "look for os._exit, sys.exit, or a crash in native code.")
NOT_RUN_TOTAL_TIMEOUT = "Not run: the whole grading run went past its limit of {seconds:g} s."
NOT_RUN_CRASHES = "Not run: the test process crashed too many times."
COLLECTION_FAILED = "The grader could not start these tests ({why}); no points could be given for {problem}."
MISSING_FILE = "{file} was not found in your submission (looked in every folder of it)."
MISSING_NAME = "{file} does not define `{name}`, which the assignment asks for."
IMPORT_FAILED = "Importing {file} failed, so nothing in it could be graded:\n{error}"
IMPORT_CRASH = ("The process running your code died while importing the file ({how}): look at its top "
                "level for os._exit, sys.exit, a crash in native code, or memory use that grows without bound.")
RAISED = "Your code raised {exc}"
LAST_CALL = "Last call into your code: {call}"
# LAST_CALL's call when the grader's own loop, run in the worker, did not return (redslow)
KIT_CALL = ("{call}, the grader's own loop run where your code runs: it calls your code at every step "
            "(a training loop: your model's forward and backward), so slow code there adds up")
# a student traceback's frame repeated (endless recursion), as Python's own traceback says it
FRAME_REPEATED = "  [Previous line repeated {count} more time{s}]"  # as Python's own tracebacks say it
SKIPPED = "This test was skipped ({reason}); a skipped test earns no points."
REFERENCE_UNAVAILABLE = "The reference solution is only available to the grader."
PRINTED = "Your code printed (cut to {limit} characters):\n{text}"
GRADER_ERROR = ("The grader could not run this test (a problem on our side, not in your code): "
                "please tell your instructor.")
DIAGNOSIS = "Likely mistake: {diagnosis}"
# under an exception raised on the meta device (torch: "... cannot be called on meta tensors")
META_VALUE = ("This test runs your code on the meta device, which holds shapes but no values: it checks that "
              "nothing is created on a fixed device, and the handout asks your code to run there too. Code that "
              "reads a tensor's values (`if`, `assert`, `bool()`, `.item()` or `.tolist()` on a tensor) cannot: "
              "drop such a check, or make it use shapes only.")
INPUT_CHANGED = ("Your code changed {what} in place; the handout asks to leave inputs as they are: no x += ..., "
                 "x.mul_(...), x[...] = ... or del/append on an argument. Work on a copy or build a new value "
                 "(x = x - m, not x -= m).")
WORKER_CRASH = ("The process running your code died during this test ({how}). Grading went on with the other "
                "tests; look for os._exit, sys.exit, endless recursion, or memory use that grows without bound.")
WORKER_LOST = "This object was lost when an earlier call crashed the process running your code."
SANDBOX_UNAVAILABLE = "The grader could not start the process that runs your code (a problem on our side): {why}"
OUTPUT_CUT = "\n[... output cut here: {count} more characters not shown]\n"
VISIBLE_PART = ("{score} / {total} points in the tests shown now. The other tests ({rest} points) and your total "
                "are shown when your instructor publishes the grades.")
# ---- time budget and stand-ins (H2) ----
ZYGOTE_KILLED = ("it killed the grader's process that starts the processes running your code: look for os.kill, "
                 "signal or subprocess calls at the top level of the file")
IMPORT_TIMEOUT = ("Importing {file} did not finish within {seconds:g} s, so nothing in it could be graded: look for "
                  "an endless loop, a sleep or a long computation at the top level of the file.")
NOT_RUN_TIMEOUTS = ("Not run: {count} earlier tests of {problem} timed out, so its other tests fail at once "
                    "(each would have waited for its time limit too). Look for an endless loop in its code.")
STAND_IN = ("While grading your other files, the reference's {file} stood in for yours wherever they import it, "
            "so this costs only {file}'s problems.")
# ---- the handout notebook's checker (kit/jupyter.py) ----
NB_NOT_IMPLEMENTED = "not implemented yet"
NB_NEVER_RUN = ("The cell of {name} ({file}) was never run in this session, so the check used the handout's "
                "text: run the cell after editing it, then the check.")
NB_NO_SETUP = "Run the setup cell (the first code cell) first: it installs the checker."
NB_CHECK_TIMEOUT = "The whole check ran past {seconds:g} s and was stopped: look for an endless loop."
NB_CHECK_CRASHED = ("The process running the tests died ({how}); your notebook's kernel is fine. Look for "
                    "os._exit, sys.exit or a crash in native code. Its last output:\n{output}")
NB_TEST_CRASHED = "The test process died during this test."
NB_UNKNOWN_PROBLEM = "There is no problem named {name!r}; the problems are: {names}."
NB_POINTS_NOTE = ("Points: what the public tests earn / the share of the problem's points they carry. The hidden "
                  "tests, run by the grader after you submit, decide the rest (the last column).")
NB_TORCH_VERSION = ("Colab's torch is {have}; the grader uses {want}. Keeping Colab's (reinstalling torch "
                    "takes minutes): results may differ in the last digits.")
NB_INSTALLING = "Installing what the tests need and Colab lacks: {names}"

# ---- notebook submissions (grade/notebooks.py, grade/intake.py, grade/results.py) ----
NOTEBOOK_NOT_JSON = "it is not valid JSON ({error}); a notebook saved by Jupyter or Colab is JSON"
NOTEBOOK_EMPTY = "it is empty (0 bytes): save the notebook before downloading it"
NOTEBOOK_IS_PYTHON = ("it is Python code, not a notebook (a .py file renamed .ipynb?): submit a .py file under its "
                      "own name ({files})")
NOTEBOOK_NOT_NOTEBOOK = "it is JSON but not a Jupyter notebook (it has no `nbformat` key)"
NOTEBOOK_INVALID = "it is not a valid Jupyter notebook ({error})"
NOTEBOOK_TOO_MANY_CELLS = "it has more than {limit} cells"
NOTEBOOK_MORE_NOTES = "... and {count} more notes like these."
NOTEBOOK_UNREADABLE = ("{notebook} could not be read: {why}. Download it again from Jupyter or Colab "
                       "(File > Download > .ipynb) and submit that file.")
NOTEBOOK_UNREADABLE_WHY = "your notebook {notebook} could not be read"
NOTEBOOK_TOO_LARGE = ("{notebook} is larger than {limit} MB and was not read: clear its outputs "
                      "(Edit > Clear all outputs) and submit it again.")
NOTEBOOK_TOO_MANY = ("Your submission holds {count} notebooks: only the {limit} shallowest were read, not "
                     "{ignored}.")
NOTEBOOK_GAVE = "{file} was rebuilt from cells {cells} of {notebook}."
NOTEBOOK_LINES = "A traceback's line numbers are {file}'s; its cells of {notebook} start at {starts}."
NOTEBOOK_NO_CELLS = ("{notebook} has no cell for {files}: a code cell counts when it is tagged `file:<name>.py` "
                     "or its first line is `# file: <name>.py`.")
NOTEBOOK_AND_FILE = ("Both {path} and cells of {notebook} give {file}, and they differ: {path} was graded, "
                     "the notebook's cells for it were not. Submit only one of them.")
NOTEBOOK_OVER_FILE = ("Both {path} and cells of {notebook} give {file}, and they differ: the notebook's cells were "
                      "graded ({path} is in a deeper folder, as files the notebook's checks write are), {path} was "
                      "not. Submit only one of them.")
NOTEBOOK_SEVERAL = "Several notebooks: graded {chosen} (it gives the most files), ignored {others}."
WRITTEN_ANSWERS = "Written answers (graded by hand)"
WRITTEN_ANSWERS_HEAD = ("**Written answers**: graded by hand ({points:g} points, not part of the autograder's "
                        "score).")
WRITTEN_ANSWERS_NO_POINTS = "**Written answers** (no points in this assignment: shown for your instructor)."
WRITTEN_ANSWERS_NONE = "(no answer found)"
WRITTEN_ANSWERS_UNKNOWN = "(not a question of this assignment)"
# ---- red1: a result's dtype (a module's comes from its parameters: a Transformer's input_ids are int64) ----
WRONG_DTYPE = "{what} has dtype {got}, expected {expected} (the dtype of the inputs, or of a module's parameters)."
# a package the grader lacks (matplotlib at the top of debugging.py imports on a laptop, not on Gradescope)
MISSING_PACKAGE = ("`{package}` is not installed where your code is graded (your own machine may have it): remove "
                   "its import from {file}; code that needs it (plotting, say) belongs in the notebook.")
# ---- rednb: top-level notebook code in a graded cell, which the grader runs as a plain Python file ----
NOTEBOOK_ONLY_NAME = ("`{name}` exists only in a notebook (IPython defines it), not in {file} as the grader imports "
                      "it: move that line to a cell without the `# file:` marker, or use print().")
INPUT_AT_IMPORT = ("{file} asks for input() while it is imported, and nobody answers in grading: move that code "
                   "to a cell without the `# file:` marker, or under `if __name__ == \"__main__\":`.")
USED_BEFORE_BOUND = ("`{name}` is used on line {used} of {file}, before line {bound} imports or defines it: a file "
                     "runs top to bottom, and a notebook's graded cells are joined in notebook order (not the order "
                     "you ran them in): move that import or definition up, or its cell above the cells using it.")
