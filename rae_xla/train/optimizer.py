"""AdamW as a handful of multi-tensor (`torch._foreach_*`) calls: torch.optim.AdamW's arithmetic, less host work.

Why: under torch_xla every optimizer op is traced on the host at every step. torch.optim.AdamW picks its
per-tensor path for XLA tensors (foreach is only a default on CUDA), i.e. ~10 Python-dispatched ops for each
of DiT^DH-XL's 378 parameter tensors (~0.8 s of the ~1.9 s host time per step measured in issue 10).
`ForeachAdamW.step` issues ~10 foreach calls for the whole model instead (the per-tensor loop runs inside
ATen's C++ foreach fallback), all out of place plus three `_foreach_copy_`: XLA runs a Python meta function
for every in-place op with an operand (lerp_, addcmul_, add_, mul_ ...), not for copy_ or out-of-place ops.

Same numbers: the ops (lerp, addcmul, addcdiv, ...) and Python-float scalars of torch 2.9's per-tensor path
(`_single_tensor_adamw`, capturable=False, amsgrad=False, maximize=False), out of place:
  p *= 1 - lr*wd;  m.lerp_(g, 1-b1);  v = v*b2 + (1-b2)*g*g;
  p += -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
tests/train/test_optimizer.py checks the two stay equal to fp32 rounding over several steps.

Same checkpoints: it *is* a torch.optim.AdamW (subclass), with the same param_groups and per-parameter state
{'step': 0-d float32 host tensor, 'exp_avg', 'exp_avg_sq'}, so state dicts written by either load into the other.
The step counter stays on the host (a Python float in the graph, no recompile): one 0-d tensor shared by every
parameter of a group, advanced once per step instead of once per parameter.
"""
from __future__ import annotations

import functools

import torch


@torch.no_grad()
def assign_(targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """targets[i].copy_(values[i]) for all i: one foreach call, or a loop for DTensors (FSDP2), which have
    no `_foreach_copy_` rule in torch 2.9."""
    if targets and hasattr(targets[0], "full_tensor"):
        for target, value in zip(targets, values):
            target.copy_(value)
        return
    torch._foreach_copy_(targets, values)


class ForeachAdamW(torch.optim.AdamW):
    """torch.optim.AdamW (no amsgrad / maximize / capturable / differentiable) with a multi-tensor step.

    For plain tensors (the XLA trainer); FSDP2's DTensors lack rules for some of these foreach ops
    (`_foreach_lerp`), so the torch backends keep torch.optim.AdamW.

    Constructor arguments as torch.optim.AdamW; `foreach` and `fused` are not accepted (this class is the
    foreach path). Parameters without a gradient at a step are skipped (their state is not advanced),
    as in torch.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
        # Group index -> (params with state, [exp_avg], [exp_avg_sq], shared step tensor); rebuilt when the
        # set of parameters with gradients changes (never, in a training loop) or after load_state_dict.
        self._slots: dict[int, tuple] = {}
        # Group index -> (params, 0-d device tensors) of the next step, set by `prepare_step` (see there).
        self._prepared: dict[int, tuple] | None = None
        self._prepared_tensors: dict[int, list[torch.Tensor]] = {}  # Group index -> its 3 scalar tensors.

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._slots = {}  # The state tensors were replaced: rebind (and re-share the step counters).

    @torch.no_grad()
    def prepare_step(self, replace_data=None) -> None:
        """The host half of the next `step()`: advances the step counters and puts this step's scalars
        (1 - lr*wd, -lr/(1 - b1^t), sqrt(1 - b2^t)) into 0-d float32 device tensors that `step()` reads.

        For a step that is traced once and replayed (runtime/xla_capture.py): Python numbers inside a traced
        step are frozen at capture, so the per-step ones must arrive as tensors; the same tensor objects are
        reused (their data replaced), so the state list of the captured step stays the same. Every parameter
        that requires grad must then have a gradient at `step()`. Without a prior call, `step()` computes
        the scalars itself (plain optimizer use). Same values as that path: the scalars are computed in double
        on the host as there and rounded to float32 once, which can differ from that path in the last bit
        (tests/train/test_optimizer.py bounds it).

        replace_data(target, value): how a new value goes into an existing tensor without a traced op (the
        runtime's `replace_data`; default `copy_`).
        """
        prepared = {}
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.requires_grad]
            if not params:
                continue
            # The slot cache exists once the state does: no per-parameter check on later steps.
            if index in self._slots or all("exp_avg" in self.state[p] for p in params):
                _, _, step_t = self._group_slots(index, group, params)
                step_t.add_(1)
                step, advance_in_step = float(step_t), False
            else:  # First step: the moments are created inside step() (in the step's graph, not one of their own).
                step, advance_in_step = self._group_step_count(index, params) + 1, True
            lr, (beta1, beta2), wd = float(group["lr"]), group["betas"], group["weight_decay"]
            values = torch.tensor([1 - lr * wd, -(lr / (1 - beta1 ** step)), (1 - beta2 ** step) ** 0.5],
                                  dtype=torch.float64).float()
            old = self._prepared_tensors.get(index)
            fresh = [v.to(params[0].device) for v in values.unbind()]
            if old is None:
                self._prepared_tensors[index] = fresh
            else:
                for target, value in zip(old, fresh):
                    (replace_data or torch.Tensor.copy_)(target, value)
            prepared[index] = (params, self._prepared_tensors[index], advance_in_step)
        self._prepared = prepared

    def _group_step_count(self, index: int, params: list[torch.Tensor]) -> float:
        """The one step count of a group's parameters (0 before the first step); several is an error."""
        steps = {float(self.state[p]["step"]) for p in params if "step" in self.state[p]}
        if len(steps) > 1:
            raise ValueError(f"ForeachAdamW needs one step count per parameter group; group {index} has {sorted(steps)}"
                             " (a state dict from an optimizer that skipped some parameters at some steps).")
        return steps.pop() if steps else 0.0

    def step_scalar_tensors(self) -> list[torch.Tensor]:
        """The device tensors `prepare_step` fills (state of a captured step); empty before the first call."""
        return [t for tensors in self._prepared_tensors.values() for t in tensors]

    def _group_slots(self, index: int, group: dict, params: list[torch.Tensor]) -> tuple:
        """(exp_avgs, exp_avg_sqs, step) for `params`, creating missing state like torch.optim.AdamW does."""
        cached = self._slots.get(index)
        if cached is not None and len(cached[0]) == len(params) and all(a is b for a, b in zip(cached[0], params)):
            return cached[1:]
        step = torch.tensor(self._group_step_count(index, params), dtype=torch.float32)  # Host, as torch's default.
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] = step  # One tensor for the group: `step.add_(1)` advances every parameter.
        slots = (params, [self.state[p]["exp_avg"] for p in params], [self.state[p]["exp_avg_sq"] for p in params],
                 step)
        self._slots[index] = slots
        return slots[1:]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            if group["amsgrad"] or group["maximize"] or group["capturable"] or group["differentiable"]:
                raise ValueError("ForeachAdamW implements plain AdamW only (amsgrad, maximize, capturable and "
                                 "differentiable must be False); use torch.optim.AdamW for those.")
            prepared = self._prepared.get(index) if self._prepared is not None else None
            if prepared is not None:
                self._prepared_step(group, *prepared)
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            exp_avgs, exp_avg_sqs, step_t = self._group_slots(index, group, params)
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            lr = float(lr)
            step_t.add_(1)
            step = float(step_t)  # Host tensor: no device sync.
            # Out-of-place foreach ops, then one foreach copy per state list: in-place ops with an operand
            # (add_, mul_, lerp_, addcmul_, addcdiv_) run a Python meta function per tensor under XLA
            # (~0.5 ms each on this box); their out-of-place forms and copy_ do not. Same kernels as torch's.
            new_params = torch._foreach_mul(params, 1 - lr * wd) if wd != 0 else params
            new_exp_avgs = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
            new_exp_avg_sqs = torch._foreach_addcmul(torch._foreach_mul(exp_avg_sqs, beta2), grads, grads, 1 - beta2)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(new_exp_avg_sqs),
                                                          bias_correction2_sqrt), eps)
            new_params = torch._foreach_addcdiv(new_params, new_exp_avgs, denom, -(lr / bias_correction1))
            assign_(exp_avgs, new_exp_avgs)
            assign_(exp_avg_sqs, new_exp_avg_sqs)
            assign_(params, new_params)
        self._prepared = None
        return loss

    def _prepared_step(self, group: dict, params: list[torch.Tensor], scalars: list[torch.Tensor],
                       advance: bool) -> None:
        """The update of `step()` with `prepare_step`'s device scalars in place of Python numbers."""
        missing = sum(p.grad is None for p in params)
        if missing:
            raise ValueError(f"ForeachAdamW.prepare_step: {missing} parameter(s) that require grad have no gradient "
                             "at step(); a prepared step updates them all (call step() without prepare_step "
                             "to skip parameters without gradients).")
        grads = [p.grad for p in params]
        exp_avgs, exp_avg_sqs, step_t = self._group_slots(self.param_groups.index(group), group, params)
        if advance:
            step_t.add_(1)  # The first step: prepare_step counted it before the state existed.
        decay, step_size, bias_correction2_sqrt = scalars
        beta1, beta2 = group["betas"]
        new_params = torch._foreach_mul(params, decay) if group["weight_decay"] != 0 else params
        new_exp_avgs = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
        new_exp_avg_sqs = torch._foreach_addcmul(torch._foreach_mul(exp_avg_sqs, beta2), grads, grads, 1 - beta2)
        denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(new_exp_avg_sqs), bias_correction2_sqrt),
                                   group["eps"])
        # addcdiv with a tensor value has no foreach form that stays on the device: p + value * (m / denom).
        new_params = torch._foreach_add(new_params, torch._foreach_mul(torch._foreach_div(new_exp_avgs, denom),
                                                                       step_size))
        assign_(exp_avgs, new_exp_avgs)
        assign_(exp_avg_sqs, new_exp_avg_sqs)
        assign_(params, new_params)


@torch.no_grad()
def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_(params, max_norm) (L2, non-finite allowed) as three multi-tensor calls.

    Returns the total gradient norm (0-d device tensor, before clipping). Same arithmetic as torch's:
    norm = ||(||g_i||)_i||, g_i *= min(max_norm / (norm + 1e-6), 1). torch only takes its foreach path on
    CUDA; on XLA its per-tensor path costs two Python-dispatched ops per parameter of host time per step.
    Plain tensors only (FSDP2 DTensors go through torch's own function, see `clip_gradients_`).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    clip_coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    assign_(grads, torch._foreach_mul(grads, clip_coef))  # Not mul_: see ForeachAdamW.step.
    return total


def clip_gradients_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The trainers' gradient clipping: the multi-tensor form for plain tensors, torch's for DTensors (FSDP2)."""
    if params and hasattr(params[0], "full_tensor"):
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return clip_grad_norm_(params, max_norm)


def prepare_hooks(runtime, optimizers) -> tuple:
    """The `compile_step(prepare=...)` hooks of a training step on XLA: each ForeachAdamW the step updates puts
    this step's LR and bias corrections into device tensors before the call (`prepare_step`), since Python
    numbers would be frozen into a captured step's replayed graph. Given only the optimizers the step updates:
    prepare_step advances the step counter (stage 1's discriminator starts at disc_upd_start). Also with
    runtime.capture_step=False: the lazy step is then the captured step's graph re-traced per call, so the two
    give the same numbers bit for bit (with Python numbers XLA compiles another graph for the update, whose float32
    rounding differs from step 2 on: measured 1e-7 relative on stage 1's loss). Eager backends keep torch's step
    (Python numbers, no hooks)."""
    if runtime.kind != "xla":
        return ()
    return tuple(functools.partial(o.prepare_step, replace_data=runtime.replace_data) for o in optimizers
                 if isinstance(o, ForeachAdamW))
