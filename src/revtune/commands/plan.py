"""revtune plan: predicted peak memory of a training run, from the model's config alone."""
HELP = "predict a run's peak memory (weights, gradients, optimizer, activations) before loading anything"


def add_arguments(parser):
    from ..config import add_config_arguments

    add_config_arguments(parser)  # --json (the plan as JSON) is every command's


def run(args) -> dict:
    from ..config import config_from_args
    from ..errors import RevtuneError
    from ..planner import check_limit, format_plan, plan_run
    from ..runtime import resolve_device

    config = config_from_args(args)
    planned = plan_run(config)
    facts = {"plan": planned.plan.to_dict(), "strategy": planned.strategy.name,
             "by_lowest_layer": [p.total for p in planned.floors]}
    heading = f"revtune plan: {config.model.name}, {config.data.task}, select {planned.strategy.name}"
    try:
        limit = check_limit(planned.plan, config.memory, resolve_device(config.model.device))
    except RevtuneError:  # the plan that was refused is worth seeing, then the one-line error
        if args.json:
            import json

            print(json.dumps(facts, indent=2), file=args.stdout)
        else:
            print(f"{heading}\n{format_plan(planned.plan, None)}\n{by_lowest_layer(planned.floors)}")
        raise
    print(f"{heading}\n{format_plan(planned.plan, limit)}")
    return {"line": by_lowest_layer(planned.floors), **facts}


def by_lowest_layer(floors) -> str:
    """Predicted peak against the lowest trained layer: what --min-layer or --memory-budget buys."""
    n = len(floors)
    picks = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
    cells = "  ".join(f"L{p}: {floors[p].total / 2**30:.2f}" for p in picks)
    return f"peak (GiB) by lowest trained layer: {cells}"
