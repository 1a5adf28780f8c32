"""Public tests for training.py (run them with `python run_tests.py`; about 10 s on a laptop CPU).

Models are built by the given `build_model` of training.py and read back with the given `snapshot`,
so keep the "Given" section as it is. Tests run on CUDA when your machine has a GPU (TF32 off), else
on the CPU; the test of seeded sampling compares with tokens drawn on the CPU, so it runs there.
"""
import math

import pytest
import torch

from autograder.kit.checks import assert_close, assert_equal, assert_scalar_close, expect, expect_tensor
from autograder.kit.devices import budget, device  # noqa: F401 - `device` is a fixture

PAD = 0
CONFIG = {"vocab_size": 11, "hidden_size": 16, "num_heads": 2, "dropout": 0.0, "seq_len": 6, "num_layers": 2}


def batch_of(seed: int, B: int, T: int, device: str = "cpu", pads=None) -> torch.Tensor:
    """Random tokens in 1..10, row b ending with pads[b] padding tokens (id 0)."""
    x = torch.randint(1, CONFIG["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))
    for row, n in enumerate(pads or []):
        if n:
            x[row, T - n:] = PAD
    return x.to(device)


def expect_float(value, what: str) -> float:
    expect(isinstance(value, (float, int)) and not isinstance(value, bool),
           f"{what} should return a Python float, got {type(value).__name__} (use loss.item()).")
    return float(value)


@pytest.mark.problem("configure_optimizer")
def test_optimizer_groups(student, device):
    """AdamW, two groups: weight decay 0.1 on the nn.Linear weights, 0.0 on everything else; lr and betas passed on"""
    model = student.training.build_model(CONFIG, seed=0, device=device)
    got = student.training.snapshot(model, student.training.configure_optimizer(model, lr=1e-3, weight_decay=0.1,
                                                                               betas=(0.8, 0.9)))
    expect(got["optimizer"] == "AdamW", f"configure_optimizer returned a {got['optimizer']}, expected AdamW.")
    names = sorted(got["params"])
    linear = sorted(n for n in names if n.endswith(".weight") and ("_proj." in n or ".fc" in n or n.startswith("lm_head")))
    by_decay = {}
    for group in got["groups"]:
        by_decay.setdefault(group["weight_decay"], []).extend(group["params"])
        expect(group["lr"] == 1e-3 and tuple(group["betas"]) == (0.8, 0.9),
               f"every group should have lr 1e-3 and betas (0.8, 0.9); one has lr {group['lr']}, betas {group['betas']}.")
    expect(len(got["groups"]) == 2 and sorted(by_decay) == [0.0, 0.1],
           f"expected two groups, with weight_decay 0.1 and 0.0; got weight decays {[g['weight_decay'] for g in got['groups']]}.")
    expect(sorted(by_decay[0.1]) == linear,
           f"the weight-decay group should hold exactly the nn.Linear weights {linear[:3]}...; it holds "
           f"{sorted(by_decay[0.1])[:6]}{'...' if len(by_decay[0.1]) > 6 else ''} (no decay on biases, LayerNorm, embeddings).")
    expect(sorted(by_decay[0.0]) == sorted(set(names) - set(linear)),
           "the group without weight decay should hold every other parameter, once.")


@pytest.mark.problem("lr_at")
def test_lr_schedule(student):
    """warm-up over 2 steps to max_lr 1.0, cosine decay to min_lr 0.1 at step 6, then min_lr"""
    expected = torch.tensor([0.5, 1.0, 1.0, 0.8681980515339464, 0.55, 0.23180194846605365, 0.1, 0.1],
                            dtype=torch.float64)
    got = [expect_float(student.training.lr_at(step, max_lr=1.0, min_lr=0.1, warmup_steps=2, total_steps=6),
                        f"lr_at({step}, ...)") for step in range(8)]
    # one comparison of the 8 values: the schedule is a whole (a cosine that rises again past the end
    # gives lr_at(7) = lr_at(5), a right value at the wrong step)
    assert_close(torch.tensor(got, dtype=torch.float64), expected, rtol=1e-9, atol=1e-12,
                 what="[lr_at(step, max_lr=1.0, min_lr=0.1, warmup_steps=2, total_steps=6) for step in range(8)]")


@pytest.mark.problem("train_step")
def test_train_step_clips_before_stepping(student, device):
    """one step with max_norm 0.1: the gradients are clipped to norm 0.1 before AdamW steps with them"""
    model = student.training.build_model(CONFIG, seed=1, device=device)
    optimizer = student.training.plain_adamw(model, lr=0.01)
    loss = student.training.train_step(model, batch_of(20, 2, 6, device, pads=[0, 2]), optimizer, 0,
                                       pad_token_id=PAD, max_norm=0.1)
    assert_scalar_close(expect_float(loss, "train_step"), 2.504316, what="the loss returned by train_step",
                        rtol=1e-4, atol=1e-5)
    got = student.training.snapshot(model, optimizer)
    grads = {n: g for n, g in got["grads"].items() if g is not None}
    expect(len(grads) == len(got["grads"]), "after train_step every parameter should have a gradient.")
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
    expect(norm <= 0.1 * (1 + 1e-4), f"the gradients' total norm after train_step is {norm:.4f}; clip it to "
                                     "max_norm 0.1 (torch.nn.utils.clip_grad_norm_) after backward.")
    for name, grad in grads.items():
        assert_close(got["exp_avg"][name], 0.1 * grad, what=f"AdamW's first moment of {name} after one step "
                     "(0.1 x the gradient it stepped with: clip before optimizer.step())", atol=1e-7)
    expect(got["training"], "train_step should leave the model in train mode.")


@pytest.mark.problem("train_step")
@pytest.mark.isolate("training", "lr_at")  # in grading, with the reference's lr_at: a wrong lr_at costs lr_at only
def test_train_steps_with_schedule(student, device):
    """three steps on new batches with a schedule: the losses, and the learning rate set to lr_at(step)"""
    model = student.training.build_model(CONFIG, seed=1, device=device)
    optimizer = student.training.plain_adamw(model, lr=0.01)
    schedule = {"max_lr": 0.02, "min_lr": 0.002, "warmup_steps": 1, "total_steps": 3}
    expected = [2.504316, 2.371287, 2.538669]
    for step, want in enumerate(expected):
        loss = student.training.train_step(model, batch_of(20 + step, 2, 6, device, pads=[0, 2]), optimizer, step,
                                           pad_token_id=PAD, max_norm=0.1, schedule=schedule)
        assert_scalar_close(expect_float(loss, "train_step"), want, what=f"the loss returned at step {step}",
                            rtol=1e-4, atol=1e-5)
    lrs = [g["lr"] for g in student.training.snapshot(model, optimizer)["groups"]]
    expect(all(abs(lr - 0.011) < 1e-9 for lr in lrs), f"after step 2 the learning rate should be lr_at(2) = 0.011, "
                                                       f"got {lrs}.")


@pytest.mark.problem("evaluate")
def test_evaluate(student, device):
    """two batches, some padding, dropout 0.5: mean loss over non-padding targets and perplexity, in eval mode, mode restored"""
    model = student.training.build_model(dict(CONFIG, dropout=0.5), seed=2, device=device)
    loader = [batch_of(30, 2, 6, device, pads=[0, 4]), batch_of(31, 3, 6, device, pads=[1, 5, 2])]
    got = student.training.evaluate(model, loader, pad_token_id=PAD)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, f"evaluate should return (mean_loss, perplexity), got {got!r}.")
    loss, perplexity = (expect_float(v, "evaluate") for v in got)
    assert_scalar_close(loss, 2.5862586314861593, what="the mean loss from evaluate", rtol=1e-4, atol=1e-5)
    assert_scalar_close(perplexity, 13.279993193176677, what="the perplexity from evaluate", rtol=1e-4, atol=1e-5)
    snap = student.training.snapshot(model)
    expect(all(not training and not grad for training, grad, _ in snap["calls"]),
           "evaluate should run the model in eval mode and under torch.no_grad().")
    expect(snap["training"], "the model was in train mode before evaluate: it should be in train mode after it.")


@pytest.mark.problem("overfit_one_batch")
@pytest.mark.timeout(60)
def test_overfit_one_batch(student, device):
    """60 steps (150 on a GPU) on one batch of 4: the loss falls from about 2.6 to below 0.5"""
    steps = budget("overfit_steps", device)
    model = student.training.build_model(CONFIG, seed=4, device=device)
    losses = student.training.overfit_one_batch(model, batch_of(50, 4, 6, device, pads=[0, 1, 3, 2]),
                                                student.training.plain_adamw(model, lr=1e-2),
                                                pad_token_id=PAD, steps=steps)
    expect(isinstance(losses, list) and len(losses) == steps, f"overfit_one_batch should return a list of {steps} losses.")
    for loss in losses:
        expect_float(loss, "overfit_one_batch's list")
    assert_scalar_close(losses[0], 2.5736312866210938, what="the first loss (before any update)", rtol=1e-4, atol=1e-5)
    expect(losses[-1] < 0.5, f"after {steps} steps the loss is {losses[-1]:.3f}; it should be below 0.5.")


@pytest.mark.problem("sample")
def test_sample_greedy_cases(student, device):
    """temperature 0, and top_k 1, give greedy decoding (model.greedy_decode), past seq_len, without gradients"""
    model = student.training.build_model(CONFIG, seed=3, device=device, training=False)
    prompt = batch_of(40, 2, 3, device)
    greedy = student.model.greedy_decode(model, prompt, 8)
    for kwargs in ({"temperature": 0.0}, {"temperature": 1.0, "top_k": 1}):
        got = student.training.sample(model, prompt, 8, generator=student.training.new_generator(0, device), **kwargs)
        expect_tensor(got, what=f"sample(model, prompt [2, 3], 8, {kwargs})", shape=(2, 11), dtype=torch.int64)
        assert_equal(got, greedy, what=f"sample(model, prompt [2, 3], 8, {kwargs}) (greedy decoding)")
    calls = student.training.snapshot(model)["calls"][8:]
    expect([c[2] for c in calls] == [3, 4, 5, 6, 6, 6, 6, 6] * 2,
           f"sample fed the model {[c[2] for c in calls][:8]} tokens; feed the last min(T, seq_len) = "
           "[3, 4, 5, 6, 6, 6, 6, 6].")
    expect(not any(c[1] for c in calls), "sample recorded gradients: decorate it with @torch.no_grad().")


@pytest.mark.problem("sample")
def test_sample_seeded(student):
    """temperature 0.8, top_k 5, a generator seeded 7 (on the CPU): these tokens, the same on a second run"""
    model = student.training.build_model(CONFIG, seed=3, training=False)
    prompt = batch_of(40, 2, 3)
    expected = torch.tensor([[9, 4, 6, 7, 9, 0, 3, 2, 9, 0, 2], [8, 3, 5, 5, 2, 9, 2, 0, 2, 0, 6]])
    for run in range(2):
        torch.manual_seed(run)  # sampling must draw from the generator, not from the global random state
        got = student.training.sample(model, prompt, 8, temperature=0.8, top_k=5,
                                      generator=student.training.new_generator(7))
        assert_equal(got, expected,
                     what="sample(model, prompt [2, 3], 8, temperature=0.8, top_k=5, generator seeded 7)")
    assert_equal(prompt, batch_of(40, 2, 3), what="the prompt after sample (it must not change)")
