"""What produced a result: the code's commit and the versions of the packages it ran on."""

import functools
import os
import subprocess
import sys
from importlib import metadata

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _git(*args: str, cwd: str = PACKAGE_DIR) -> str:
  """git's output in the checkout that holds `cwd`; '' when that is not a git checkout."""
  try:
    done = subprocess.run(["git", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=10, check=False)
  except (OSError, subprocess.SubprocessError):
    return ""
  return done.stdout.strip() if done.returncode == 0 else ""


def code_modified(cwd: str = PACKAGE_DIR) -> bool:
  """Whether tracked files outside results/ differ from the checkout's commit. A run
  that writes into the checkout's results/ (the committed campaigns do) changes no code."""
  return bool(_git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                   ":(top,exclude)results", cwd=cwd))


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), or '' where it cannot be read. Float results
  of the same code differ in their last bits between CPU models (AVX-512 or not), and
  early stopping and the queries can follow: a comparison of runs needs it."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return ""


@functools.lru_cache(maxsize=None)
def software() -> dict:
  """{'commit': sha or None, 'modified': code_modified() (None: unknown), 'python':
  version, each package's version (None if not installed), 'cpu': cpu_model()}."""
  commit = _git("rev-parse", "HEAD") or None
  modified = None
  if commit:
    modified = code_modified()
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  return {"commit": commit, "modified": modified, "python": sys.version.split()[0],
          **versions, "cpu": cpu_model()}
