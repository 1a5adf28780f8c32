"""Hidden tests for training.py: every problem against the reference, on the runner's device (CUDA when
there is a GPU, with TF32 off), with models built by the given `build_model` in the student's file and
results read back with the given `snapshot` (so the same tests run in the sandbox's worker)."""
import math

import pytest
import torch

from autograder.kit.checks import assert_close, assert_equal, assert_scalar_close, expect, expect_tensor, fail
from autograder.kit.devices import budget, device  # noqa: F401 - `device` is a fixture
from autograder.kit.training import rounding_noise
from autograder.kit.torchkit import strict_device

PAD = 0
CONFIG = {"vocab_size": 13, "hidden_size": 16, "num_heads": 2, "dropout": 0.0, "seq_len": 8, "num_layers": 2}
SCHEDULE = {"max_lr": 0.01, "min_lr": 0.001, "warmup_steps": 2, "total_steps": 6}
# Overfitting one batch: steps per device (a GPU runner trains more) and the loss to reach.
OVERFIT_LOSS = 0.5
OVERFIT_LR = 1e-2


def batch_of(seed: int, B: int, T: int, device: str, vocab: int = 13, pads=None) -> torch.Tensor:
    """Random tokens in 1..vocab-1, row b ending with pads[b] padding tokens."""
    x = torch.randint(1, vocab, (B, T), generator=torch.Generator().manual_seed(seed))
    for row, n in enumerate(pads or []):
        if n:
            x[row, T - n:] = PAD
    return x.to(device)


def paired(student, reference, seed: int, device: str, config=None, training: bool = True):
    """The student's model (built in the student's file) and the reference's, with the same weights."""
    config = config or CONFIG
    stu = student.training.build_model(config, seed=seed, device=device, training=training)
    ref = reference.training.build_model(config, seed=seed, device=device, training=training)
    params = student.training.snapshot(stu)["params"]
    with torch.no_grad():
        for name, p in ref.named_parameters():
            expect(name in params, f"build_model's model has no parameter {name}: keep model.py as given.")
            p.copy_(params[name].to(device))
    return stu, ref


def reference_snapshot(reference, model, optimizer=None) -> dict:
    return reference.training.snapshot(model, optimizer)


def expect_float(value, what: str) -> float:
    expect(isinstance(value, (float, int)) and not isinstance(value, bool),
           f"{what} should return a Python float, got {type(value).__name__} (use loss.item()).")
    return float(value)


# ---- configure_optimizer ----------------------------------------------------------------------

def linear_weight_names(model) -> set:
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@pytest.mark.problem("configure_optimizer")
@pytest.mark.parametrize("num_layers,lr,weight_decay,betas", [(1, 3e-4, 0.1, (0.9, 0.95)), (3, 1e-3, 0.05, (0.8, 0.99))])
def test_optimizer_groups(student, reference, device, num_layers, lr, weight_decay, betas):
    """AdamW; weight decay on the nn.Linear weights only, none on biases, LayerNorm and embeddings; lr and betas"""
    config = dict(CONFIG, num_layers=num_layers)
    stu, ref = paired(student, reference, 1, device, config)
    what = f"configure_optimizer(model, lr={lr}, weight_decay={weight_decay}, betas={betas})"
    got = student.training.snapshot(stu, student.training.configure_optimizer(stu, lr=lr, weight_decay=weight_decay,
                                                                              betas=betas))
    expect(got["optimizer"] == "AdamW", f"{what} returned a {got['optimizer']}, expected torch.optim.AdamW "
                                        "(decoupled weight decay; Adam's weight_decay is an L2 penalty).")
    decay = linear_weight_names(ref)
    every = {name for name, _ in ref.named_parameters()}
    seen = [name for group in got["groups"] for name in group["params"]]
    expect(sorted(seen) == sorted(every), f"{what}: every parameter must be in exactly one group; "
           f"missing {sorted(every - set(seen))[:4]}, repeated {sorted({n for n in seen if seen.count(n) > 1})[:4]}.")
    expect(len(got["groups"]) == 2, f"{what} has {len(got['groups'])} parameter groups, expected 2 "
                                    "(with and without weight decay).")
    for group in got["groups"]:
        names, wd = set(group["params"]), group.get("weight_decay")
        wrong = sorted(names - decay) if wd else sorted(names & decay)
        expect(not wrong, f"{what}: the group with weight_decay={wd} holds {wrong[:4]}; weight decay goes on the "
               "weights of the nn.Linear layers only (not on biases, LayerNorm or embeddings).")
        expect(wd in (0.0, weight_decay), f"{what}: a group has weight_decay={wd}, expected {weight_decay} or 0.0.")
        expect(group.get("lr") == lr, f"{what}: a group has lr={group.get('lr')}, expected {lr}.")
        expect(tuple(group.get("betas", ())) == tuple(betas), f"{what}: a group has betas={group.get('betas')}, "
                                                               f"expected {betas}.")


# ---- lr_at ------------------------------------------------------------------------------------

# learning rates of order 1, so that a wrong schedule is far from the right one (diagnoses compare
# values to 1e-4)
LR_SCHEDULES = [{"max_lr": 1.0, "min_lr": 0.1, "warmup_steps": 5, "total_steps": 20},
                {"max_lr": 0.5, "min_lr": 0.0, "warmup_steps": 1, "total_steps": 4},
                {"max_lr": 3.0, "min_lr": 0.3, "warmup_steps": 0, "total_steps": 10},
                {"max_lr": 2.0, "min_lr": 0.5, "warmup_steps": 3, "total_steps": 23}]


@pytest.mark.problem("lr_at")
@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_lr_schedule(student, reference, schedule):
    """every step of the warm-up and of the decay, and past the end (stays at min_lr)"""
    for step in range(schedule["total_steps"] + 5):
        want = reference.training.lr_at(step, **schedule)
        got = expect_float(student.training.lr_at(step, **schedule), f"lr_at({step}, ...)")
        assert_scalar_close(got, want, what=f"lr_at({step}, {', '.join(f'{k}={v}' for k, v in schedule.items())})",
                            rtol=1e-9, atol=1e-12)


@pytest.mark.problem("lr_at")
def test_lr_warmup_and_floor(student):
    """warm-up reaches max_lr at its last step (not 0 at step 0); the decay ends exactly at min_lr"""
    schedule = {"max_lr": 1.0, "min_lr": 0.1, "warmup_steps": 4, "total_steps": 10}
    got = [student.training.lr_at(s, **schedule) for s in range(12)]
    expect(abs(got[0] - 0.25) < 1e-12 and abs(got[3] - 1.0) < 1e-12,
           f"with warmup_steps=4, lr_at(0..3) should be 0.25, 0.5, 0.75, 1.0 (step + 1 over 4); got {got[:4]}.")
    expect(abs(got[4] - 1.0) < 1e-12, f"the decay starts at max_lr: lr_at(4) should be 1.0, got {got[4]}.")
    expect(all(abs(g - 0.1) < 1e-12 for g in got[10:]),
           f"from total_steps on the learning rate stays at min_lr 0.1; got {got[10:]}.")


# ---- train_step -------------------------------------------------------------------------------

def run_steps(student, reference, device, steps, *, max_norm, schedule, seed=4, pads=(0, 3, 6)):
    stu, ref = paired(student, reference, seed, device)
    stu_opt, ref_opt = student.training.plain_adamw(stu, lr=0.01), reference.training.plain_adamw(ref, lr=0.01)
    losses = []
    for step in range(steps):
        batch = batch_of(100 + step, 3, 8, device, pads=list(pads))
        got = student.training.train_step(stu, batch, stu_opt, step, pad_token_id=PAD, max_norm=max_norm,
                                          schedule=schedule)
        want = reference.training.train_step(ref, batch, ref_opt, step, pad_token_id=PAD, max_norm=max_norm,
                                             schedule=schedule)
        losses.append((expect_float(got, f"train_step (step {step})"), want))
    return (student.training.snapshot(stu, stu_opt), reference_snapshot(reference, ref, ref_opt), losses)


@pytest.mark.problem("train_step")
@pytest.mark.isolate("training", "lr_at")
@pytest.mark.parametrize("max_norm,schedule", [(0.05, SCHEDULE), (100.0, SCHEDULE), (0.2, None)])
def test_train_steps_like_reference(student, reference, device, max_norm, schedule):
    """four steps: losses, weights, gradients (clipped), AdamW's moments and learning rate as the reference's"""
    got, want, losses = run_steps(student, reference, device, 4, max_norm=max_norm, schedule=schedule)
    what = f"train_step with max_norm={max_norm}, schedule={schedule}"
    for step, (g, w) in enumerate(losses):
        assert_scalar_close(g, w, what=f"the loss returned at step {step} ({what})", rtol=1e-4, atol=1e-5)
    for name, value in want["grads"].items():
        expect(got["grads"][name] is not None, f"{what}: parameter {name} has no gradient after the step.")
        assert_close(got["grads"][name], value, what=f"the gradient of {name} after 4 steps ({what})", atol=1e-5)
    for name, value in want["exp_avg"].items():
        assert_close(got["exp_avg"][name], value, what=f"AdamW's first moment of {name} after 4 steps ({what}): "
                                                       "the gradients the optimiser stepped with", atol=1e-5)
    noise = rounding_noise(want["exp_avg"])   # the key projections' biases: no gradient, Adam steps on rounding
    for name, value in want["params"].items():
        if name not in noise:
            assert_close(got["params"][name], value, what=f"parameter {name} after 4 steps ({what})", atol=1e-5)
    lrs = [group["lr"] for group in got["groups"]]
    expected_lr = want["groups"][0]["lr"]
    expect(all(abs(lr - expected_lr) < 1e-12 for lr in lrs),
           f"{what}: after step 3 the learning rate is {lrs}, expected {expected_lr} (lr_at(step) set before "
           "optimizer.step()).")


@pytest.mark.problem("train_step")
@pytest.mark.isolate("training", "lr_at")
def test_train_step_schedules_every_group(student, reference, device):
    """an optimiser with two parameter groups (as configure_optimizer's): the loss as the reference's, and the
    schedule sets every group's learning rate"""
    stu, ref = paired(student, reference, 4, device)
    optimizer = student.kit_function("training", "adamw_in_groups")(stu, lr=0.01, groups=2)
    ref_optimizer = reference.kit_function("training", "adamw_in_groups")(ref, lr=0.01, groups=2)
    for step in range(3):
        batch = batch_of(100 + step, 3, 8, device, pads=[0, 3, 6])
        loss = student.training.train_step(stu, batch, optimizer, step, pad_token_id=PAD, schedule=SCHEDULE)
        expected = reference.training.train_step(ref, batch, ref_optimizer, step, pad_token_id=PAD, schedule=SCHEDULE)
        lrs = [group["lr"] for group in student.training.snapshot(stu, optimizer)["groups"]]
        want = reference.training.lr_at(step, **SCHEDULE)
        expect(len(lrs) == 2 and all(abs(lr - want) < 1e-12 for lr in lrs),
               f"train_step(model, batch, optimizer with 2 parameter groups, step={step}, schedule={SCHEDULE}): the "
               f"groups' learning rates are {lrs} after the step, expected {want} in each (set lr_at(step) in every "
               "group of optimizer.param_groups, not only the first).")
        assert_scalar_close(expect_float(loss, "train_step"), expected, rtol=1e-4, atol=1e-5,
                            what=f"the loss returned at step {step} (an optimiser with 2 parameter groups)")


@pytest.mark.problem("train_step")
def test_train_step_mode_and_forward(student, reference, device):
    """a model in eval mode: train_step gives the reference's loss, trains in train mode (one forward, with
    gradients) and leaves the model there"""
    stu, ref = paired(student, reference, 5, device, training=False)
    batch = batch_of(7, 2, 8, device, pads=[1, 0])
    want = reference.training.train_step(ref, batch, reference.training.plain_adamw(ref), 0, pad_token_id=PAD)
    loss = student.training.train_step(stu, batch, student.training.plain_adamw(stu), 0, pad_token_id=PAD)
    assert_scalar_close(expect_float(loss, "train_step"), want, what="the loss returned by train_step",
                        rtol=1e-4, atol=1e-5)
    got = student.training.snapshot(stu)
    expect([tuple(c[:2]) for c in got["calls"]] == [(True, True)],
           f"train_step should call the model once, in train mode with gradients recorded; the calls were "
           f"(training, grad enabled) = {[tuple(c[:2]) for c in got['calls']]}.")
    expect(got["training"], "after train_step the model should be in train mode (call model.train()).")


# ---- evaluate ---------------------------------------------------------------------------------

EVAL_PADS = [[0, 0], [5, 1, 3], [6, 6]]


def loader(device):
    return [batch_of(200 + i, len(pads), 8, device, pads=pads) for i, pads in enumerate(EVAL_PADS)]


def expect_numbers(got: tuple, want: tuple, whats: tuple, *, rtol: float, atol: float) -> None:
    """Each number of `got` within rtol/atol of `want`'s. A failure reports the whole tuple, so that a
    mistake is named only by a variant that returns every number the student's code did (a right mean
    loss with a wrong perplexity is not "the mean loss counts padding", whose perplexity is close)."""
    for g, w, what in zip(got, want, whats):
        if not abs(g - w) <= atol + rtol * abs(w):
            fail(f"{what} is off by {abs(g - w):.3g}.", f"expected {w:.6g}, got {g:.6g}.",
                 got=tuple(float(v) for v in got), expected=tuple(float(v) for v in want))


@pytest.mark.problem("evaluate")
@pytest.mark.parametrize("training", [True, False])
def test_evaluate_like_reference(student, reference, device, training):
    """mean loss over every non-padding target (batches with more padding weigh less) and its perplexity"""
    config = dict(CONFIG, dropout=0.5)
    stu, ref = paired(student, reference, 6, device, config, training=training)
    want = reference.training.evaluate(ref, loader(device), pad_token_id=PAD)
    got = student.training.evaluate(stu, loader(device), pad_token_id=PAD)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, f"evaluate should return (mean_loss, perplexity), got {got!r}.")
    loss, perplexity = (expect_float(v, "evaluate") for v in got)
    what = f"evaluate on 3 batches (padding {EVAL_PADS}), model in {'train' if training else 'eval'} mode"
    expect_numbers((loss, perplexity), want, (f"the mean loss of {what}", f"the perplexity of {what}"),
                   rtol=1e-4, atol=1e-5)
    snap = student.training.snapshot(stu)
    modes = {tuple(c[:2]) for c in snap["calls"]}
    expect(modes == {(False, False)}, f"{what}: the model should run in eval mode without gradients (torch.no_grad()); "
                                      f"its calls had (training, grad enabled) = {sorted(modes)}.")
    expect(snap["training"] == training, f"{what}: evaluate should restore the model's mode; it was "
                                         f"{'train' if training else 'eval'} before and is "
                                         f"{'train' if snap['training'] else 'eval'} after.")


# ---- overfit_one_batch ------------------------------------------------------------------------

@pytest.mark.problem("overfit_one_batch")
@pytest.mark.timeout(60)
def test_overfit_reaches_low_loss(student, reference, device):
    """the student's loop on the given model memorises one batch: its loss falls below 0.5 within the step budget"""
    steps = budget("overfit_steps", device)
    stu, ref = paired(student, reference, 8, device)
    batch = batch_of(9, 4, 8, device, pads=[0, 2, 4, 1])
    first = reference.training.lm_loss(ref(batch), batch, PAD).item()
    losses = student.training.overfit_one_batch(stu, batch, student.training.plain_adamw(stu, lr=OVERFIT_LR),
                                                pad_token_id=PAD, steps=steps, max_norm=1.0)
    expect(isinstance(losses, list) and len(losses) == steps,
           f"overfit_one_batch(steps={steps}) should return a list of {steps} losses, got "
           f"{type(losses).__name__} of length {len(losses) if hasattr(losses, '__len__') else '?'}.")
    for loss in losses:
        expect_float(loss, "overfit_one_batch's list")
    assert_scalar_close(losses[0], first, what="the first loss returned by overfit_one_batch (before any update)",
                        rtol=1e-4, atol=1e-5)
    params = student.training.snapshot(stu)["params"]
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(params[name].to(device))
        reached = reference.training.lm_loss(ref.eval()(batch), batch, PAD).item()
    expect(reached < OVERFIT_LOSS, f"after {steps} steps on one batch (AdamW, lr {OVERFIT_LR}) the model's loss on it is "
                                   f"{reached:.3f}, expected below {OVERFIT_LOSS} (it starts at {first:.3f}).")


@pytest.mark.problem("overfit_one_batch")
def test_overfit_steps_like_reference(student, reference, device):
    """four steps with the optimiser given, gradients clipped to max_norm=0.05: AdamW's moments, losses, weights as the reference's"""
    stu, ref = paired(student, reference, 8, device)
    stu_opt = student.training.plain_adamw(stu, lr=OVERFIT_LR)
    ref_opt = reference.training.plain_adamw(ref, lr=OVERFIT_LR)
    batch = batch_of(9, 4, 8, device, pads=[0, 2, 4, 1])
    what = f"overfit_one_batch(model, batch [4, 8], AdamW (lr {OVERFIT_LR}), steps=4, max_norm=0.05)"
    want = reference.training.overfit_one_batch(ref, batch, ref_opt, pad_token_id=PAD, steps=4, max_norm=0.05)
    got = student.training.overfit_one_batch(stu, batch, stu_opt, pad_token_id=PAD, steps=4, max_norm=0.05)
    expect(isinstance(got, list) and len(got) == 4, f"{what} should return a list of 4 losses, got {got!r}.")
    # the optimiser's state first: it names the mistakes (another optimiser, no clipping) that the losses only hint at
    state, want_state = student.training.snapshot(stu, stu_opt), reference_snapshot(reference, ref, ref_opt)
    expect(state["exp_avg"], f"{what}: the optimiser given never stepped; train with it, not with one of your own.")
    for name, value in want_state["exp_avg"].items():
        assert_close(state["exp_avg"][name], value, what=f"AdamW's first moment of {name} after {what}: the gradients "
                                                         "the optimiser stepped with (clipped to max_norm)", atol=1e-5)
    for step, (g, w) in enumerate(zip(got, want)):
        assert_scalar_close(expect_float(g, "overfit_one_batch's list"), w, what=f"the loss of step {step} ({what})",
                            rtol=1e-4, atol=1e-5)
    noise = rounding_noise(want_state["exp_avg"])   # the key projections' biases: Adam steps on rounding noise
    for name, value in want_state["params"].items():
        if name not in noise:
            assert_close(state["params"][name], value, what=f"parameter {name} after {what}", atol=1e-5)


# ---- sample -----------------------------------------------------------------------------------

def sample_pair(student, reference, device, prompt, *, seed, **kwargs):
    stu, ref = paired(student, reference, 10, device, training=False)
    want = reference.training.sample(ref, prompt.clone(), generator=reference.training.new_generator(seed, device),
                                      **kwargs)
    torch.manual_seed(seed + 1)  # a different global random state: sampling must draw from the generator
    got = student.training.sample(stu, prompt, generator=student.training.new_generator(seed, device), **kwargs)
    return got, want, stu


@pytest.mark.problem("sample")
@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.7, 4), (1.5, 2), (2.0, 13), (0.5, 1)])
def test_sample_like_reference(student, reference, device, temperature, top_k):
    """seeded generator: the same tokens as the reference (temperature, top-k), decoding past seq_len"""
    prompt = batch_of(11, 3, 5, device)
    what = f"sample(model, prompt [3, 5], 12, temperature={temperature}, top_k={top_k}, generator seeded 12)"
    got, want, stu = sample_pair(student, reference, device, prompt, seed=12, max_new_tokens=12,
                                 temperature=temperature, top_k=top_k)
    expect_tensor(got, what=what, shape=want.shape, dtype=torch.int64)
    assert_equal(got, want, what=what)
    snap = student.training.snapshot(stu)
    lengths = [c[2] for c in snap["calls"]]
    expect(lengths == [min(5 + i, CONFIG["seq_len"]) for i in range(12)],
           f"{what} fed the model {lengths} tokens; it should feed the last min(T, seq_len) at each step.")
    expect(not any(c[1] for c in snap["calls"]), f"{what} recorded gradients; sample under torch.no_grad().")


@pytest.mark.problem("sample")
def test_sample_temperature_zero_is_greedy(student, reference, device):
    """temperature 0 is greedy decoding (the generator is not needed)"""
    prompt = batch_of(13, 2, 3, device)
    got, want, _ = sample_pair(student, reference, device, prompt, seed=14, max_new_tokens=10, temperature=0.0)
    expect_tensor(got, what="sample(..., temperature=0)", shape=want.shape, dtype=torch.int64)
    assert_equal(got, want, what="sample(model, prompt [2, 3], 10, temperature=0)")


@pytest.mark.problem("sample")
def test_sample_prompt_unchanged_and_reproducible(student, reference, device):
    """the prompt is kept, unchanged; the same seed gives the same tokens, another seed other tokens"""
    stu = student.training.build_model(CONFIG, seed=15, device=device, training=False)
    prompt = batch_of(16, 4, 4, device)
    kept = prompt.clone()
    runs = [student.training.sample(stu, prompt, 16, temperature=1.0,
                                    generator=student.training.new_generator(seed, device)) for seed in (1, 1, 2)]
    ref = reference.training.build_model(CONFIG, seed=15, device=device, training=False)
    ref.load_state_dict({k: v.to(device) for k, v in student.training.snapshot(stu)["params"].items()}, strict=False)
    want = reference.training.sample(ref, prompt.clone(), 16, temperature=1.0,
                                     generator=reference.training.new_generator(1, device))
    for run in runs:
        expect_tensor(run, what="sample(model, prompt [4, 4], 16)", shape=(4, 20), dtype=torch.int64)
    assert_equal(runs[0], want, what="sample(model, prompt [4, 4], 16, generator seeded 1)")
    assert_equal(prompt, kept, what="the prompt after sample (it must not be changed)")
    for run in runs:
        assert_equal(run[:, :4], kept, what="the first 4 tokens of sample's output (the prompt)")
    assert_equal(runs[1], runs[0], what="sample with a generator seeded 1, run twice")
    expect(not torch.equal(runs[0], runs[2]), "sample gave the same 64 tokens with generators seeded 1 and 2: "
                                              "draw with torch.multinomial(probs, 1, generator=generator).")


@pytest.mark.problem("sample")
def test_sample_device_agnostic(student, reference):
    """like the reference on the CPU, then on the 'meta' device: nothing is created on a fixed device (what a
    CUDA runner would reject)"""
    got, want, _ = sample_pair(student, reference, "cpu", batch_of(18, 2, 3, "cpu"), seed=19, max_new_tokens=9,
                               temperature=0.9, top_k=3)
    assert_equal(got, want, what="sample(model, prompt [2, 3], 9, temperature=0.9, top_k=3) on the CPU")
    model = student.training.build_model(CONFIG, seed=17, device="meta", training=False)
    prompt = torch.zeros(2, 3, dtype=torch.long, device="meta")
    for kwargs in ({"temperature": 0.0}, {"temperature": 0.9, "top_k": 3}):
        with strict_device("meta"):
            got = student.training.sample(model, prompt, 9, **kwargs)
        expect(isinstance(got, torch.Tensor) and got.device.type == "meta" and tuple(got.shape) == (2, 12),
               f"sample(model on meta, prompt [2, 3] on meta, 9, {kwargs}) should give a [2, 12] tensor on meta, "
               f"got {type(got).__name__} {list(getattr(got, 'shape', []))} on {getattr(got, 'device', '?')}.")
