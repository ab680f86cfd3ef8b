"""revtune intention-tune: Intention-Tuning's two steps (intent predictor, then generator) into one folder."""
HELP = ("Intention-Tuning: train an intent predictor with ir, then a revision generator on the layers it "
        "used most, starting from its adapters")

SET_BY_THE_METHOD = ("task", "select")


def parts():
    from ..config import PARTS
    from ..intention_options import IntentionOptions

    return {**PARTS, "intention": IntentionOptions}


def add_arguments(parser):
    from ..config import add_config_arguments  # nothing heavy: every command builds this parser

    add_config_arguments(parser, skip=SET_BY_THE_METHOD, parts=parts(), strategy_options=("ir",))
    from .train import add_resume_argument

    add_resume_argument(parser)


def run(args) -> dict:
    from ..config import PARTS, RunConfig, build_parts, merged_values
    from ..intention import intention_line, intention_tune

    nested, source = merged_values(args, parts(), {"task": "revise", "select": "ir"})
    options = build_parts({"intention": parts()["intention"]}, nested, source)["intention"]
    nested.pop("intention")
    if args.resume:
        config, options = resumed(args, options)
        result = intention_tune(config, options, resume=True, announce=False)
    else:
        result = intention_tune(RunConfig(**build_parts(PARTS, nested, source)), options, announce=False)
    return {"line": intention_line(result), "output": str(result.path), "report": str(result.path / "report.html"),
            "test": result.metrics.get("test"), "generator_layers": result.metrics.get("generator_layers"),
            "alignment": result.metrics.get("alignment")}


def resumed(args, options):
    """The config and options the interrupted run was started with; differing flags are refused."""
    import dataclasses
    import json

    from ..errors import RevtuneError
    from ..config import refuse_changes
    from ..intention_options import IntentionOptions
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
