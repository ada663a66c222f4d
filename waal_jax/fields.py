"""Config field types: each checks a value and says in one line what is wrong with it.

A setting is a default, a type from this module and a line of help (`Option`, or
`setting` for a dataclass field); `waal_jax.settings` holds the library's, and a
strategy declares its own `query.*` options beside its code (`Strategy.config_fields`).
"""

import dataclasses
import math
from typing import Any, Tuple

from waal_jax.errors import UserError


def fail(name: str, value: Any, why: str):
  raise UserError(f"{name}={value!r}: {why}")


@dataclasses.dataclass(frozen=True)
class Int:
  minimum: int = 0
  special: Tuple[int, ...] = ()      # values allowed below the minimum (e.g. -1 = all)

  def check(self, name: str, value):
    if isinstance(value, bool) or not isinstance(value, int):
      fail(name, value, "must be an integer")
    if value < self.minimum and value not in self.special:
      also = "".join(f" or {s}" for s in self.special)
      fail(name, value, f"must be >= {self.minimum}{also}")
    return value

  def describe(self) -> str:
    return f"integer >= {self.minimum}" + "".join(f" or {s}" for s in self.special)


@dataclasses.dataclass(frozen=True)
class Float:
  minimum: float = 0.0
  maximum: float = math.inf
  open_minimum: bool = False         # the minimum itself is not allowed

  def check(self, name: str, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
      fail(name, value, "must be a finite number")
    if value < self.minimum or (self.open_minimum and value == self.minimum):
      fail(name, value, f"must be {'>' if self.open_minimum else '>='} {self.minimum:g}")
    if value > self.maximum:
      fail(name, value, f"must be <= {self.maximum:g}")
    return float(value)

  def describe(self) -> str:
    text = f"number {'>' if self.open_minimum else '>='} {self.minimum:g}"
    return text + (f", <= {self.maximum:g}" if self.maximum != math.inf else "")


@dataclasses.dataclass(frozen=True)
class Choice:
  options: Tuple[str, ...]

  def check(self, name: str, value):
    if value not in self.options:
      fail(name, value, f"choose one of {', '.join(self.options)}")
    return value

  def describe(self) -> str:
    return ", ".join(self.options)


@dataclasses.dataclass(frozen=True)
class OfType:
  """A value of one Python type, returned as it is."""
  kind: type
  description: str       # what the error says it must be

  def check(self, name: str, value):
    if not isinstance(value, self.kind):
      fail(name, value, f"must be {self.description}")
    return value

  def describe(self) -> str:
    return self.description


def Bool() -> OfType:  # pylint: disable=invalid-name  (reads as the other field types)
  """A field that is True or False."""
  return OfType(bool, "True or False")


def Text() -> OfType:  # pylint: disable=invalid-name
  """A field that is a string."""
  return OfType(str, "a string")


@dataclasses.dataclass(frozen=True)
class Floats:
  """A tuple of numbers, each checked by `each`; () is allowed (it means a default)."""
  each: Float = Float()

  def check(self, name: str, value):
    if not isinstance(value, (tuple, list)):
      fail(name, value, "must be a tuple of numbers, e.g. (0.5,)")
    return tuple(self.each.check(name, v) for v in value)

  def describe(self) -> str:
    return f"tuple of numbers, each a {self.each.describe()}"


@dataclasses.dataclass(frozen=True)
class Option:
  """One setting: its default, the type that checks a value, and one line of help."""
  default: Any
  check: Any          # Int, Float, Choice, OfType or Floats
  help: str

  def describe(self) -> str:
    """What the field accepts, in words (for --help and the docs)."""
    return self.check.describe()


def setting(default, check, help: str):  # pylint: disable=redefined-builtin
  """A dataclass field that is a setting (see Option): its metadata keeps the check and
  the help, so the schema lives in the dataclass itself."""
  return dataclasses.field(default=default, metadata={"option": Option(default, check, help)})
