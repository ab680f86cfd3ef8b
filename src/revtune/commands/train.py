"""revtune train: one fine-tuning run into a run directory."""
HELP = "fine-tune with a layer-selection strategy and write a run directory"


def add_arguments(parser):
    from ..config import add_config_arguments

    add_config_arguments(parser)


def run(args) -> int:
    from ..config import config_from_args

    config = config_from_args(args)  # bad values fail here, before torch is imported
    from ..training.run import train_run

    train_run(config)
    return 0
