import zipfile

from autograder.grade import intake

WANTED = ["attention.py", "model.py", "debugging.py"]


def test_nested_folder_and_notes(tmp_path):
    sub = tmp_path / "sub" / "my work" / "hw"
    sub.mkdir(parents=True)
    for name in WANTED:
        (sub / name).write_text(f"# {name}\n")
    (sub / "conftest.py").write_text("import os\n")
    (sub / "torch.py").write_text("x = 1\n")
    (tmp_path / "sub" / "__MACOSX").mkdir()
    (tmp_path / "sub" / "__MACOSX" / "model.py").write_text("junk")
    result = intake.take(tmp_path / "sub", WANTED, tmp_path / "clean")
    assert result.missing == []
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == sorted(WANTED)
    assert any("conftest.py" in note and "torch.py" in note for note in result.notes)


def test_zip_at_depth_with_bom_and_crlf(tmp_path):
    sub = tmp_path / "upload"
    sub.mkdir()
    with zipfile.ZipFile(sub / "hw.zip", "w") as archive:
        archive.writestr("folder/attention.py", b"\xef\xbb\xbfx = 1\r\ny = 2\r\n")
        archive.writestr("folder/model.py", b"z = 3\n")
    result = intake.take(sub, WANTED, tmp_path / "clean")
    assert result.missing == ["debugging.py"]
    assert (tmp_path / "clean" / "attention.py").read_bytes() == b"x = 1\ny = 2\n"


def test_shallowest_copy_wins(tmp_path):
    (tmp_path / "s" / "old").mkdir(parents=True)
    (tmp_path / "s" / "model.py").write_text("new = 1\n")
    (tmp_path / "s" / "old" / "model.py").write_text("old = 1\n")
    result = intake.take(tmp_path / "s", ["model.py"], tmp_path / "clean")
    assert (tmp_path / "clean" / "model.py").read_text() == "new = 1\n"
    assert any("Several files are named model.py" in note for note in result.notes)


def test_missing_submission(tmp_path):
    result = intake.take(tmp_path / "nothing", WANTED, tmp_path / "clean")
    assert result.missing == WANTED


def test_environments_and_caches_are_skipped_and_named(tmp_path):
    """A virtual environment in the assignment folder (1 GB or more) is never read; the output says so."""
    sub = tmp_path / "hw"
    for folder in (".venv/lib/python3.11/site-packages/torch", "venv/lib", "__pycache__", ".ipynb_checkpoints",
                   "my-env/lib/site"):
        (sub / folder).mkdir(parents=True)
    (sub / ".venv/lib/python3.11/site-packages/torch/model.py").write_text("deep = 1\n")
    (sub / "venv/lib/attention.py").write_text("venv = 1\n")
    (sub / ".ipynb_checkpoints/model.py").write_text("checkpoint = 1\n")
    (sub / "__pycache__/debugging.py").write_text("cache = 1\n")
    (sub / "my-env/pyvenv.cfg").write_text("home = /usr/bin\n")
    (sub / "my-env/lib/site/debugging.py").write_text("other venv = 1\n")
    result = intake.take(sub, WANTED, tmp_path / "clean")
    assert result.missing == WANTED
    note = next(n for n in result.notes if n.startswith("Skipped folders"))
    for folder in (".venv", "venv", "__pycache__", ".ipynb_checkpoints", "my-env"):
        assert folder in note.split(": ", 1)[1].rstrip(".").split(", ")
    assert not any("site-packages" in n or "Several files" in n for n in result.notes)


def test_environments_inside_a_zip_are_skipped_and_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "hw.zip", "w") as archive:
        archive.writestr("hw/attention.py", b"x = 1\n")
        archive.writestr("hw/.venv/lib/model.py", b"venv = 1\n")
        archive.writestr("hw/env2/pyvenv.cfg", b"home = /usr/bin\n")
        archive.writestr("hw/env2/lib/debugging.py", b"venv = 1\n")
    result = intake.take(tmp_path / "hw.zip", WANTED, tmp_path / "clean")
    assert result.missing == ["model.py", "debugging.py"]
    assert any(n == "Skipped folders that are not part of a submission: hw/.venv, hw/env2." for n in result.notes)
