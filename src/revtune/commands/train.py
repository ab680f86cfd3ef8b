"""revtune train: one fine-tuning run into a run directory."""
HELP = "fine-tune with a layer-selection strategy and write a run directory"


def add_arguments(parser):
    from ..config import add_config_arguments

    add_config_arguments(parser)


def run(args) -> int:
    from ..config import config_from_args
    from ..training.run import run_summary, summary_line, train_run

    config = config_from_args(args)
    result = train_run(config, announce=False)
    return {"line": summary_line(result.path, result.headline, result.metrics),
            **run_summary(result.path, config.task, result.headline, result.metrics)}
