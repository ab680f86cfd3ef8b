"""Layer selection. Importing the package registers the built-in strategies' options (torch-free);
each strategy's code loads when it is built."""
from . import options as _builtins  # noqa: F401
