"""torchkit.check_structure and copy_parameters (strict loading by name), inplace.leaves_unchanged
(issue 10, section 2): each names the difference it finds."""
import pytest
import torch
import torch.nn as nn

from autograder.kit.checks import GradingFailure
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import check_structure, copy_parameters


class Pair(nn.Module):
    """Two linear layers, and a list of two blocks of two layers each (like a Transformer's blocks)."""

    def __init__(self, share_block=False, share_weight=False, tie=False, extra=False, plain_list=False):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)
        if share_weight:
            self.b.weight = self.a.weight
        if tie:  # a reference may tie weights too
            self.b.weight = self.a.weight
        block = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
        blocks = [block, block] if share_block else [nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)) for _ in range(2)]
        if plain_list:
            self.blocks = blocks
        else:
            self.blocks = nn.ModuleList(blocks)
        if extra:
            self.scale = nn.Parameter(torch.ones(1))
        self.drop1 = nn.Dropout(0.1)
        self.drop2 = self.drop1  # a module without parameters may be shared: nothing to compare


PARTS = ("blocks.0", "blocks.1")


def test_the_same_structure_passes_and_loads_every_weight():
    student, reference = Pair(), Pair()
    check_structure(student, reference, "Pair()", parts=PARTS)
    copy_parameters(student, reference, what="Pair()")
    for (name, got), (_, want) in zip(student.named_parameters(), reference.named_parameters()):
        assert torch.equal(got, want), name


def test_a_module_repeated_is_named():
    with pytest.raises(GradingFailure, match="blocks.1 is the same module as blocks.0"):
        check_structure(Pair(share_block=True), Pair(), "Pair()", parts=PARTS)


def test_a_shared_parameter_is_named():
    with pytest.raises(GradingFailure, match="parameter b.weight is the same tensor as a.weight"):
        check_structure(Pair(share_weight=True), Pair(), "Pair()")


def test_tied_parameters_must_stay_tied_where_the_reference_ties_them():
    check_structure(Pair(tie=True), Pair(tie=True), "Pair()")
    with pytest.raises(GradingFailure, match="b.weight should be the same tensor as a.weight"):
        check_structure(Pair(), Pair(tie=True), "Pair()")


def test_a_plain_python_list_registers_nothing():
    with pytest.raises(GradingFailure, match="no sub-module blocks.0, blocks.1 registered"):
        check_structure(Pair(plain_list=True), Pair(), "Pair()", parts=PARTS)
    with pytest.raises(GradingFailure, match="missing parameter.*blocks.0.0.weight"):
        copy_parameters(Pair(plain_list=True), Pair(), what="Pair()")


def test_loading_is_strict_and_names_unexpected_and_missing_parameters():
    with pytest.raises(GradingFailure, match="unexpected parameter.*scale"):
        copy_parameters(Pair(extra=True), Pair(), what="Pair()")
    with pytest.raises(GradingFailure, match="missing parameter.*scale"):
        copy_parameters(Pair(), Pair(extra=True), what="Pair()")
    reference = Pair()
    reference.a = nn.Linear(3, 4)
    with pytest.raises(GradingFailure, match=r"a.weight has shape \[3, 3\], expected \[4, 3\]"):
        copy_parameters(Pair(), reference, what="Pair()")


def test_a_second_name_for_a_module_adds_no_parameter():
    student = Pair()
    student.first = student.blocks[0]  # an alias of a part
    student.a_again = student.a  # an alias of a layer
    check_structure(student, Pair(), "Pair()", parts=PARTS)
    copy_parameters(student, Pair(), what="Pair()")


def test_what_lies_inside_a_part_is_left_to_its_own_problem():
    student = Pair()
    student.blocks[0][0] = nn.Linear(3, 3, bias=False)  # a bug inside blocks.0: graded where blocks are
    student.blocks[1][1].weight = student.blocks[1][0].bias  # sharing inside blocks.1 only
    check_structure(student, Pair(), "Pair()", parts=PARTS)
    with pytest.raises(GradingFailure, match="missing parameter.*blocks.0.0.bias"):
        check_structure(student, Pair(), "Pair()")


def test_sharing_across_a_part_boundary_is_named():
    student = Pair()
    student.blocks[1][0].weight = student.a.weight
    with pytest.raises(GradingFailure, match="blocks.1.0.weight is the same tensor as a.weight"):
        check_structure(student, Pair(), "Pair()", parts=PARTS)


def test_inputs_unchanged_names_the_input_written_into():
    x, y = torch.ones(2, 3), torch.zeros(4, dtype=torch.long)
    with leaves_unchanged("f(x, y)", x=x, y=y):
        (x + 1, y.clone().add_(1))  # new tensors: fine
    with pytest.raises(GradingFailure, match="changed y, its argument in f"):
        with leaves_unchanged("f(x, y)", x=x, y=y):
            y.add_(1)
    with pytest.raises(GradingFailure, match="changed x, its argument in f"):
        with leaves_unchanged("f(x)", x=x):
            x.unsqueeze_(0)  # the shape counts too
