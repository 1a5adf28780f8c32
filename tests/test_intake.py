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
