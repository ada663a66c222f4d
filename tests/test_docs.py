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
from conftest import ROOT, needs_fashion_mnist, run_module
from waal_jax import settings

DOCS = os.path.join(ROOT, "docs")


def _members(name, cls):
  """A class's public methods and properties, as (qualified name, function)."""
  for member_name, member in vars(cls).items():
    if member_name.startswith("_"):
      continue
    if isinstance(member, property):
      yield f"{name}.{member_name}", member.fget
    elif isinstance(member, (classmethod, staticmethod)):
      yield f"{name}.{member_name}", member.__func__
    elif inspect.isfunction(member):
      yield f"{name}.{member_name}", member


def _public_api():
  """(qualified name, object) for every name waal_jax exports, the public methods and
  properties of its classes, and the functions and classes of its modules (those
  `__all__` names, else those the module defines) with their members."""
  for name in waal_jax.__all__:
    obj = getattr(waal_jax, name)
    yield name, obj
    if inspect.isclass(obj):
      yield from _members(name, obj)
    elif inspect.ismodule(obj):
      names = getattr(obj, "__all__", None) or [
          n for n, o in vars(obj).items() if not n.startswith("_")
          and getattr(o, "__module__", None) == obj.__name__]
      for member_name in names:
        member = getattr(obj, member_name)
        if inspect.isfunction(member) or inspect.isclass(member):
          yield f"{name}.{member_name}", member
          if inspect.isclass(member):
            yield from _members(f"{name}.{member_name}", member)


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


def _commands(text):
  """Every concrete `python -m experiments.main ...` command (code lines, joined over
  trailing backslashes), as argument lists; templates with NAME, DIR or [...] aside."""
  joined = re.sub(r"\\\n\s*", " ", text)
  for match in re.finditer(r"python -m experiments\.main ([^\n`]*)", joined):
    args = match.group(1).split()
    if args and not any(t in match.group(1) for t in ("NAME", "DIR", "[", "FIELD")):
      yield args


def test_every_command_of_the_readme_and_docs_names_a_config_and_fields_that_exist():
  """The quick and full commands are not run here (minutes to hours): their config and
  every --config.FIELD=VALUE must load and pass the settings' checks, so that a renamed
  field or config cannot leave them stale."""
  import importlib  # pylint: disable=g-import-not-at-top
  from conftest import with_overrides  # pylint: disable=g-import-not-at-top
  texts = [open(os.path.join(ROOT, "README.md")).read()] + [
      open(os.path.join(DOCS, n)).read() for n in sorted(os.listdir(DOCS)) if n.endswith(".md")]
  commands = [args for text in texts for args in _commands(text)]
  assert len(commands) >= 6
  for args in commands:
    if args == ["--help"]:
      continue
    name, _, preset = next(a for a in args if a.startswith("--config=")).split("=")[1].partition(":")
    config = importlib.import_module(f"experiments.configs.{name}").get_config(
        *([preset] if preset else []))
    if name == "image_folder":   # (settings.resolve wants a path for it; the docs' is made up)
      args = [a for a in args if not a.startswith("--config.data.path=")]
      config.data.path = ROOT
    resolved = settings.resolve(with_overrides(config, [a for a in args
                                                        if a.startswith("--config.")]))
    assert resolved.data.name, args


@needs_fashion_mnist
def test_the_readme_s_quick_command_runs_as_written(tmp_path):
  """The README's one-minute command, as written but for its workdir, on real
  Fashion-MNIST: two rounds, and the line that says where the results are."""
  with open(os.path.join(ROOT, "README.md")) as f:
    quick = next(args for args in _commands(f.read()) if "--config.train.epochs=2" in args)
  workdir = str(tmp_path / "quick")
  args = [f"--workdir={workdir}" if a.startswith("--workdir=") else a for a in quick]
  # As a user runs it: XLA's default optimisation (the suite's level 0 made this
  # command take 90 s instead of 34 s, run alone on the 2-core EPYC).
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "")
  done = run_module("experiments.main", *args, env={"XLA_FLAGS": flags.strip()})
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stderr.strip().splitlines()[-1].endswith(f"results in {workdir}")
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, "results.json")) as f:
    rounds = json.load(f)["rounds"]
  assert [r["num_labeled"] for r in rounds] == [1000, 1500]
  assert all(r["test_accuracy"] > 0.6 for r in rounds)     # ten classes: chance is 0.1
  # "The same numbers go into TensorBoard event files in the workdir".
  from test_tensorboard import assert_every_tag_drawn  # pylint: disable=g-import-not-at-top
  assert_every_tag_drawn(workdir)
