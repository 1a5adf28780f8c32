import subprocess
import sys

import pytest
import torch

from autograder.kit.checks import GradingFailure
from autograder.kit.torchkit import strict_device


def test_strict_device_catches_a_cpu_index_and_allows_what_cuda_allows():
    emb = torch.nn.Embedding(5, 4).to("meta")
    x = torch.ones(2, 3, device="meta")
    with strict_device("meta"):
        assert (x / torch.tensor(2.0).sqrt()).device.type == "meta"  # a 0-dim CPU scalar is fine
        mask = torch.tril(torch.ones(2, 3)).bool().to(x.device)  # CPU work, then moved: fine
        assert x.masked_fill(~mask, 0.0).device.type == "meta"
    with pytest.raises(GradingFailure, match="aten::embedding got tensors on different devices"):
        with strict_device("meta"):
            emb(torch.arange(3))  # plain meta would accept this; CUDA would not


def test_warm_up_stands_in_for_dynamo_until_it_is_needed():
    code = """
import sys, torch
from autograder.kit.torchkit import warm_up
warm_up()
assert type(sys.modules["torch._dynamo"]).__name__ == "_DynamoStandIn"
layer = torch.nn.Linear(2, 2)
optimizer = torch.optim.AdamW(layer.parameters())
layer(torch.ones(1, 2)).sum().backward()
weight = layer.weight.detach().clone()
optimizer.step()  # graph_break, twice: the `training` assignment's steps need no real dynamo
assert type(sys.modules["torch._dynamo"]).__name__ == "_DynamoStandIn" and not torch.equal(weight, layer.weight)
compiled = torch.compile(lambda t: t + 1)
assert type(sys.modules["torch._dynamo"]).__name__ == "module"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
