"""Through the sandbox, each call into student code runs with the grader's default dtype (float32): a
student file that sets torch's default dtype at import must not change what the other files' calls build
(red-team: `torch.set_default_dtype(torch.float64)` atop tokenization.py cost the embeddings, the attention
maps and SelfAttention their points)."""

import torch

SUBMISSION = '''
import torch

torch.set_default_dtype(torch.float64)   # at import: a global change of the student's


def new_tensor():
    return torch.zeros(2)


def new_layer_weight():
    return torch.nn.Linear(2, 1).weight.detach()
'''


def test_calls_build_in_the_graders_default_dtype(remote):
    assert remote.student.new_tensor().dtype == torch.float32
    assert remote.student.new_layer_weight().dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32   # the grader's own is untouched


def test_importing_a_file_leaves_the_default_dtype_as_it_was(tmp_path):
    """Without the sandbox too: the import of a student file keeps torch's default dtype."""
    from autograder.kit import adapter

    (tmp_path / "student.py").write_text(SUBMISSION)
    submission = adapter.Submission(tmp_path, record_calls=False)
    try:
        submission.module("student")
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(torch.float32)
