"""Network cost of a sampling run, ours vs the official implementation, computed on the host.

Cost unit: batch rows through a network (per-sample forward passes), counted separately for the main
model and the weaker autoguidance model (DiT^DH-S is far cheaper than DiT^DH-XL). The plan is the
same one `sample` executes, so the numbers are exact, not estimates (tests count real calls).
"""
from rae_xla.flow.guidance import official_rows_per_evaluation, parse_guidance, rows_per_evaluation
from rae_xla.flow.samplers import plan_steps
from rae_xla.flow.schedule import sampling_grid


def sampling_cost(*, method, num_steps, shift, batch_size, guidance=None):
    """Returns dict(ours=dict(main, weak, evaluations), official=dict(main, weak, evaluations), steps).

    guidance: as for `sample`; for autoguidance the `model` key may be omitted (no network is run).
    `evaluations` counts velocity-field evaluations per sample (NFE in the ODE sense).
    """
    g = parse_guidance(guidance, need_weak_model=False)
    grid = sampling_grid(num_steps, shift)
    needs = (lambda t: g.active_at(t)) if g is not None else (lambda t: False)
    ours = dict(main=0, weak=0, evaluations=0)
    official = dict(main=0, weak=0, evaluations=0)
    plan = plan_steps(method, grid, needs)
    for _, flags, _ in plan:
        for guided in flags:
            main, weak = rows_per_evaluation(g, guided, batch_size)
            ours["main"] += main
            ours["weak"] += weak
            ours["evaluations"] += 1
            main, weak = official_rows_per_evaluation(g, batch_size)
            official["main"] += main
            official["weak"] += weak
            official["evaluations"] += 1
    return dict(ours=ours, official=official, steps=len(plan))
