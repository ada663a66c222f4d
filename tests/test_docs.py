"""The documentation cannot go stale unnoticed: the site builds in strict mode with every
public name and config field on it, the docs' Python runs, --help lists the schema."""

import html
import inspect
import os
import re
import subprocess
import sys

import pytest

import waal_jax
from conftest import ROOT, run_module
from waal_jax import settings

DOCS = os.path.join(ROOT, "docs")


def _public_api():
  """(qualified name, object) for every name waal_jax exports and the public methods and
  properties of its classes, and the functions and classes its modules export."""
  for name in waal_jax.__all__:
    obj = getattr(waal_jax, name)
    yield name, obj
    if inspect.isclass(obj):
      for member_name, member in vars(obj).items():
        if member_name.startswith("_"):
          continue
        if isinstance(member, property):
          yield f"{name}.{member_name}", member.fget
        elif isinstance(member, (classmethod, staticmethod)):
          yield f"{name}.{member_name}", member.__func__
        elif inspect.isfunction(member):
          yield f"{name}.{member_name}", member
    elif inspect.ismodule(obj):
      for member_name in getattr(obj, "__all__", ()):
        member = getattr(obj, member_name)
        if inspect.isfunction(member) or inspect.isclass(member):
          yield f"{name}.{member_name}", member


def test_every_public_name_has_a_docstring():
  missing = [name for name, obj in _public_api() if not (obj.__doc__ or "").strip()]
  assert not missing, f"no docstring: {', '.join(missing)}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  """The site, built as CI builds it (strict: a warning fails)."""
  out = str(tmp_path_factory.mktemp("site"))
  done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", out],
                        cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), check=False)
  assert done.returncode == 0, done.stderr[-5000:]
  assert "WARNING" not in done.stderr, done.stderr
  return out


def _page(site, name):
  with open(os.path.join(site, name, "index.html")) as f:
    return f.read()


def _text(site, name):
  """A page's text as a reader sees it: tags removed, entities decoded."""
  return html.unescape(re.sub(r"<[^>]+>", "", _page(site, name)))


def test_the_api_page_documents_every_public_name_with_its_docstring(site):
  page = _page(site, "api")
  for name, obj in _public_api():
    if name.count(".") == 1 and inspect.ismodule(getattr(waal_jax, name.split(".")[0])):
      continue   # (a module's members are documented on their own pages of the module)
    assert f'id="waal_jax.{name}"' in page, f"{name} has no entry on the API page"
    first_line = (obj.__doc__ or "").strip().splitlines()[0]
    words = re.sub(r"`", "", first_line).split()[:4]
    assert " ".join(words) in _text(site, "api").replace("\n", " "), (
        f"{name}'s docstring ({first_line!r}) is not on the API page")


def test_the_config_page_lists_every_field_with_its_default_and_help(site):
  text = _text(site, "config")
  for name, option in settings.schema():
    row = f"{name}\n{option.default!r}"
    assert row in text, f"{name} with default {option.default!r} is not on the page"
    assert option.help.split(";")[0][:60] in text.replace("\n", " ")


def test_the_strategies_page_has_every_strategy_and_its_measured_query_time(site):
  text = _text(site, "strategies")
  for name in waal_jax.strategies.names():
    assert f"\n{name}\n" in text
  # Margin's seconds on Fashion-MNIST as results/benchmark_fashion_mnist.jsonl has them.
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(ROOT, "results", "benchmark_fashion_mnist.jsonl")) as f:
    margin = next(r for r in map(json.loads, f)
                  if r.get("what") == "query" and r["strategy"] == "margin")
  assert f"{margin['seconds']:.3g}" in text


def _python_blocks(path):
  with open(path) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_every_python_block_of_the_docs_is_the_tested_readme_snippet_or_runs(tmp_path):
  """The README's first block runs in tests/test_examples.py; any other block of the docs
  runs here, from a folder outside the repository."""
  readme = _python_blocks(os.path.join(ROOT, "README.md"))[0]
  blocks = [b for name in sorted(os.listdir(DOCS)) if name.endswith(".md")
            for b in _python_blocks(os.path.join(DOCS, name))]
  assert readme in blocks       # the library page shows the README's snippet itself
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  for k, block in enumerate(b for b in dict.fromkeys(blocks) if b != readme):
    script = tmp_path / f"block_{k}.py"
    script.write_text(block)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, (block, done.stderr[-3000:])


def test_help_lists_every_config_field_with_its_default_and_exits_0():
  done = run_module("experiments.main", "--help")
  assert done.returncode == 0, done.stderr
  assert "--workdir:" in done.stdout and "--config:" in done.stdout
  for name, option in settings.schema():
    assert f"--config.{name}={option.default!r}  [{option.describe()}]\n" in done.stdout
    assert option.help in done.stdout
  assert "al.rounds=1 trains twice" in done.stdout
