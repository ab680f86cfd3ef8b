"""revtune train: one fine-tuning run into a run directory."""
HELP = "fine-tune with a layer-selection strategy and write a run directory"


def add_arguments(parser):
    from ..config import add_config_arguments

    add_config_arguments(parser)
    add_resume_argument(parser)


def add_resume_argument(parser):
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="OUT",
                        help="continue the interrupted run OUT (kept in OUT.partial) from its last checkpoint, "
                             "with the config it was started with; without OUT, --out's")


def resumed_config(args, saved: dict, **overrides):
    """The config a run was started with; flags given now may only repeat it (or change checkpointing)."""
    from ..config import RunConfig, explicit_values, refuse_changes

    started = RunConfig.from_values(saved)
    given = explicit_values(args, **overrides)
    given.pop("out", None)
    refuse_changes(started.flat(), given)
    keep = {k: given[k] for k in ("save_every", "keep_checkpoints") if k in given}
    return started.override(**keep, overwrite=False)


def resume_target(args) -> str:
    from ..errors import RevtuneError

    out = getattr(args, "out", None) if args.resume is True else args.resume
    if out is None:
        raise RevtuneError("--resume needs the run's directory: --resume OUT", field="resume")
    return out


def run(args) -> dict:
    from ..config import config_from_args
    from ..rundir import read_started_config

    config = resumed_config(args, read_started_config(resume_target(args))) if args.resume else \
        config_from_args(args)
    from ..distributed import is_main
    from ..training.run import run_summary, summary_line, train_run  # after the checks: before torch loads

    result = train_run(config, resume=bool(args.resume), announce=False)
    if not is_main():  # one summary per run, from rank 0
        return {}
    return {"line": summary_line(result.path, result.headline, result.metrics),
            **run_summary(result.path, config.data.task, result.headline, result.metrics)}
