"""The one exception type that means "the user gave us something we cannot use".

The driver turns it into a single line on stderr and a non-zero exit; every other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Bad input: a config field, a file or a folder. The message names it."""
