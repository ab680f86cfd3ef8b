

def output_flags():
    """``--quiet`` and ``--json``, shared by every command (and by sub-commands such as ``config show``)."""
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("--quiet", action="store_true", help="print only the final summary line (no progress)")
    group.add_argument("--json", action="store_true", help="print the summary as one JSON object (no progress)")
    return common
