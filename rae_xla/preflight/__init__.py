"""The preflight: what a job will do and whether it can start, before a pod is paid for.

  python -m rae_xla.main --config=configs/ditdh_xl.py --workdir=gs://b/runs/x --preflight [--plan_for=v5p-64]

Prints the plan (devices and mesh, batches, steps and epochs, parameters, FLOPs, bytes per device under the
sharding rules, checkpoint cadence and size), checks the config and every input the job reads (local paths,
gs:// objects, hf:// files: metadata only) and that the workdir is writable, then reports ALL problems at once,
one `FATAL <kind> error:` line each. It loads no weights and does not start the accelerator runtime (devices
come from the machine's description, preflight/devices.py), so `launch/tpu_vm.sh run` can run it on worker 0
alone before starting every worker.
"""
from __future__ import annotations

import sys

from rae_xla import config as config_lib
from rae_xla import errors
from rae_xla.preflight import devices as devices_lib
from rae_xla.preflight import inputs, job_plans
from rae_xla.preflight.plan import Plan, add_mesh


def collect(config, workdir: str, plan_for: str = "") -> tuple[Plan, inputs.Checks, list[errors.UserError]]:
    """(plan, input checks, every problem found: config, devices, plan, inputs; each once)."""
    problems: list[errors.UserError] = []
    try:
        config_lib.validate(config)
    except errors.UserError as e:
        problems.append(e)
    plan = Plan()
    try:
        devices = devices_lib.parse_plan_for(plan_for) if plan_for else devices_lib.detect(config.runtime.backend)
    except errors.UserError as e:
        problems.append(e)
        devices = None
    if devices is not None:
        mesh = add_mesh(plan, config, devices)
        plan_job = job_plans.BY_JOB.get(config.job)
        if plan_job is not None:
            try:
                plan_job(plan, config, devices, mesh)
            except errors.UserError as e:
                plan.problems.append(e)
        if mesh:  # The device-count checks (batch divisibility) of validate, now that the count is known.
            try:
                config_lib.validate(config, num_devices=devices.num_devices,
                                    process_count=max(1, devices.num_hosts if devices.backend == "xla" else
                                                      devices.num_devices))
            except errors.UserError as e:
                plan.problems.append(e)
    checks = inputs.check(config, workdir)
    # One line per problem: validate() stops at its first finding, which the input checks may find again in
    # other words; a problem is dropped when its text, or the field it starts with ('rae.stats=...'), was seen.
    seen, unique = set(), []
    for problem in problems + plan.problems + checks.problems:
        text = str(problem)
        field = text.split("=", 1)[0] if "=" in text.split(" ", 1)[0] else None
        if text in seen or (field and field in seen):
            continue
        seen.update({text} | ({field} if field else set()))
        unique.append(problem)
    return plan, checks, unique


def run(config, workdir: str, plan_for: str = "", out=None, err=None) -> int:
    """Prints the plan and the problems; returns the number of problems (main.py exits 2 when > 0)."""
    out, err = out or sys.stdout, err or sys.stderr
    plan, checks, problems = collect(config, workdir, plan_for)
    print(f"preflight of job {config.job!r}:", file=out)
    width = max((len(label) for label, _ in plan.lines), default=0)
    for label, value in plan.lines:
        print(f"  {label:<{width}}  {value}", file=out)
    for note in checks.notes:
        print(f"  note: {note}", file=out)
    print(f"  inputs checked: {', '.join(checks.checked) or 'none'}", file=out)
    for problem in problems:
        print(errors.fatal_line(problem), file=err)
    print(f"preflight: {len(problems)} problem(s)" if problems else "preflight OK", file=out)
    return len(problems)
