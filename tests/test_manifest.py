import pytest

from autograder import manifest as manifest_module
from autograder.manifest import ROOT, ManifestError


def test_transformer_manifest(transformer):
    assert transformer.submission_files == ("attention.py", "model.py", "debugging.py")
    assert transformer.total_points == 100
    assert len(transformer.problems) == 14
    assert [t.visibility for t in transformer.tests] == ["visible", "after_published"]
    assert transformer.visibility_of("tests_hidden/transformer/test_x.py") == "after_published"
    assert transformer.visibility_of("elsewhere/test_x.py") == "hidden"


def write(tmp_path, body):
    folder = tmp_path / "assignments" / "demo"
    folder.mkdir(parents=True)
    (folder / "assignment.toml").write_text(body)
    return tmp_path


GOOD = '''
name = "demo"
submission_files = ["a.py"]
[[tests]]
path = "t"
[problems]
f = { points = 3, file = "a.py" }
'''


def test_defaults(tmp_path):
    m = manifest_module.load("demo", write(tmp_path, GOOD))
    assert (m.reference, m.starter, m.title) == ("reference/demo", "starter/demo", "demo")
    assert (m.test_timeout_s, m.total_timeout_s, m.platform_timeout_s, m.timeouts_per_problem) == (30, 480, 600, 2)
    assert m.tests[0].public is False and m.tests[0].visibility == "after_published"


@pytest.mark.parametrize("change, message", [
    (("name = \"demo\"", "name = \"other\""), "does not match"),
    (("file = \"a.py\"", "file = \"b.py\""), "not a submission file"),
    (("path = \"t\"", "path = \"t\"\nvisibility = \"sometimes\""), "visibility"),
    (("points = 3, ", ""), "points"),
    (("[[tests]]", "[limits]\ntotal_timeout_s = 600\n[[tests]]"), "under platform_timeout_s"),
    (("[[tests]]", "[limits]\ntotal_timeout_s = 700\nplatform_timeout_s = 720\n[[tests]]"), "under platform_timeout_s"),
    (("[[tests]]", "[limits]\ntest_timeout_s = 475\n[[tests]]"), "under total_timeout_s"),
])
def test_errors(tmp_path, change, message):
    with pytest.raises(ManifestError, match=message):
        manifest_module.load("demo", write(tmp_path, GOOD.replace(*change)))


def test_unknown_assignment(tmp_path):
    with pytest.raises(ManifestError, match="no assignment"):
        manifest_module.load("nope", tmp_path)


def test_total_time_leaves_a_margin_under_the_platform_limit(tmp_path):
    """Gradescope stops a run at its limit (600 s unless raised): results.json must be written before."""
    for name in ("transformer", "foundations", "training"):
        m = manifest_module.load(name)
        assert m.total_timeout_s + manifest_module.PLATFORM_MARGIN_S <= m.platform_timeout_s <= 600
    raised = manifest_module.load("demo", write(tmp_path, GOOD.replace(
        "[[tests]]", "[limits]\ntotal_timeout_s = 1200\nplatform_timeout_s = 1800\n[[tests]]")))
    assert raised.total_timeout_s == 1200


@pytest.mark.parametrize("table, ok", [
    ("steps = { cpu = 60, cuda = 150 }", True),
    ("steps = { cpu = 2.5 }", True),
    ("steps = { cuda = 150 }", False),        # no cpu figure
    ("steps = 60", False),                    # not per device
    ('steps = { cpu = "60" }', False),
])
def test_budgets_are_numbers_per_device_with_a_cpu_figure(tmp_path, table, ok):
    source = (ROOT / "assignments" / "training" / "assignment.toml").read_text(encoding="utf-8")
    head, _, tail = source.partition("[budgets]\n")
    tail = tail.split("\n\n", 1)[1]
    folder = tmp_path / "assignments" / "training"
    folder.mkdir(parents=True)
    (folder / "assignment.toml").write_text(f"{head}[budgets]\n{table}\n\n{tail}", encoding="utf-8")
    if ok:
        assert "steps" in manifest_module.load("training", root=tmp_path).budgets
    else:
        with pytest.raises(manifest_module.ManifestError, match="budgets"):
            manifest_module.load("training", root=tmp_path)


@pytest.mark.parametrize("weights, ok", [
    ("{ test_a = 2, test_b = 0.5 }", True),
    ("{ test_a = 0 }", False),
    ('{ test_a = "2" }', False),
    ("{ test_a = true }", False),
    ("2", False),
])
def test_weights_are_positive_numbers_per_test(tmp_path, weights, ok):
    body = GOOD.replace('file = "a.py" }', f'file = "a.py", weights = {weights} }}')
    if ok:
        assert manifest_module.load("demo", write(tmp_path, body)).problems["f"].weights == {"test_a": 2, "test_b": 0.5}
    else:
        with pytest.raises(ManifestError, match="weights must be"):
            manifest_module.load("demo", write(tmp_path, body))
