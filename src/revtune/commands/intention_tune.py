"""revtune intention-tune: Intention-Tuning's two steps (intent predictor, then generator) into one folder."""
HELP = ("Intention-Tuning: train an intent predictor with ir, then a revision generator on the layers it "
        "used most, starting from its adapters")

SET_BY_THE_METHOD = ("task", "select")


def add_arguments(parser):
    import argparse
    import dataclasses

    from ..config import RunConfig, add_config_arguments  # nothing heavy: every command builds this parser

    add_config_arguments(parser, only=tuple(f.name for f in dataclasses.fields(RunConfig)
                                            if f.name not in SET_BY_THE_METHOD))
    parser.add_argument("--predictor", help="reuse this finished intent run as step 1 (copied into OUT)")
    parser.add_argument("--predictor-steps", type=int, default=0,
                        help="optimizer steps of step 1 (0: the same schedule as the generator)")
    parser.add_argument("--init-layers", default="selected",
                        help="generator layers whose adapters start from the predictor's: the trained "
                             "layers S_gen (default), all, or none")
    parser.add_argument("--alignment", action=argparse.BooleanOptionalAction, default=False,
                        help="also run ir on the generation task alone and report how its layers agree "
                             "with the predictor's (a third training run)")
    from .train import add_resume_argument

    add_resume_argument(parser)


def run(args) -> int:
    from ..config import config_from_args
    from ..intention import IntentionOptions, intention_line, intention_tune

    options = IntentionOptions(predictor=args.predictor, predictor_steps=args.predictor_steps,
                               init_layers=args.init_layers, alignment=args.alignment)
    if args.resume:
        config, options = resumed(args, options)
        result = intention_tune(config, options, resume=True, announce=False)
    else:
        result = intention_tune(config_from_args(args, task="revise"), options, announce=False)
    return {"line": intention_line(result), "output": str(result.path), "report": str(result.path / "report.html"),
            "test": result.metrics.get("test"), "generator_layers": result.metrics.get("generator_layers"),
            "alignment": result.metrics.get("alignment")}


def resumed(args, options):
    """The config and options the interrupted run was started with; differing flags are refused."""
    import dataclasses
    import json

    from ..errors import RevtuneError
    from ..intention import IntentionOptions
    from ..config import refuse_changes
    from ..rundir import partial_path
    from .train import resume_target, resumed_config

    out = resume_target(args)
    path = partial_path(out) / "intention.json"
    if not path.is_file():
        raise RevtuneError("no interrupted intention-tune run to resume (expected OUT.partial/intention.json)",
                           path=partial_path(out), field="resume")
    saved = json.loads(path.read_text())
    defaults = dataclasses.asdict(IntentionOptions())
    given = {k: v for k, v in dataclasses.asdict(options).items() if v != defaults[k]}
    refuse_changes(saved["options"], given)
    return resumed_config(args, saved["config"], task="revise"), IntentionOptions(**saved["options"])
