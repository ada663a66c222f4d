"""What produced a result: the code's commit and the versions of the packages it ran on."""

import functools
import os
import subprocess
import sys
from importlib import metadata

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def _git(*args: str) -> str:
  """git's output in this package's checkout; '' when that is not a git checkout."""
  try:
    done = subprocess.run(["git", *args], cwd=os.path.dirname(os.path.abspath(__file__)),
                          capture_output=True, text=True, timeout=10, check=False)
  except (OSError, subprocess.SubprocessError):
    return ""
  return done.stdout.strip() if done.returncode == 0 else ""


@functools.lru_cache(maxsize=None)
def software() -> dict:
  """{'commit': sha or None, 'modified': tracked files differ from it (None: unknown),
  'python': version, and each package's version (None if not installed)}."""
  commit = _git("rev-parse", "HEAD") or None
  modified = None
  if commit:
    modified = bool(_git("status", "--porcelain", "--untracked-files=no"))
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  return {"commit": commit, "modified": modified, "python": sys.version.split()[0],
          **versions}
