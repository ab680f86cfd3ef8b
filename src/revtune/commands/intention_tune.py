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


def run(args) -> int:
    from ..config import PARTS, RunConfig, build_parts, merged_values
    from ..intention import intention_tune

    nested, source = merged_values(args, parts(), {"task": "revise", "select": "ir"})
    options = build_parts({"intention": parts()["intention"]}, nested, source)["intention"]
    nested.pop("intention")
    intention_tune(RunConfig(**build_parts(PARTS, nested, source)), options)
    return 0
