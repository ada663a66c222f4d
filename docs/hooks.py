"""MkDocs hooks: the parts of the site that are generated, so that they cannot go stale.

- `<!-- generated: config-fields -->`: every config field with its default and help,
  from the library's settings schema (a new field documents itself).
- `<!-- generated: strategy-table -->`: every registered strategy, the model outputs it
  reads, its options and its measured query time (results/benchmark_*.jsonl).
- `<!-- generated: api -->`: an API entry for every name `waal_jax.__all__` exports.
- The committed results' Markdown reports, plots and JSON lines (results/) become part
  of the site, so the pages link to them as they are.

Used by mkdocs.yml (`hooks:`); `python -m mkdocs build --strict` builds the site.
"""

import html
import json
import os
import sys

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_RESULT_FILES = (".md", ".png", ".jsonl", ".csv")
_BENCHMARKS = ("benchmark_fashion_mnist.jsonl", "benchmark_fashion_mnist_xeon.jsonl",
               "benchmark_cifar10.jsonl")


def on_files(files, config):
  """Adds results/ (reports, plots, timings) to the site under the same paths."""
  for folder, _, names in os.walk(os.path.join(ROOT, "results")):
    for name in sorted(names):
      if name.endswith(_RESULT_FILES):
        path = os.path.relpath(os.path.join(folder, name), ROOT)
        files.append(File(path, ROOT, config["site_dir"], config["use_directory_urls"]))
  return files


def on_page_markdown(markdown, page, config, files):
  del page, config, files
  for marker, make in _GENERATORS.items():
    text = f"<!-- generated: {marker} -->"
    if text in markdown:
      markdown = markdown.replace(text, make())
  return markdown


def _cell(text) -> str:
  """Text as one Markdown table cell, shown literally (no HTML, no emphasis)."""
  text = html.escape(str(text), quote=False).replace("\n", " ")
  for special in "|*_[]`":
    text = text.replace(special, "\\" + special)
  return text


def _value(value) -> str:
  return f"`{value!r}`"


def config_fields() -> str:
  """A table per group of the settings schema: field, default, accepted values, help."""
  from waal_jax import settings  # pylint: disable=g-import-not-at-top
  groups = {}
  for name, option in settings.schema():
    group = name.rpartition(".")[0] or "run"
    groups.setdefault(group, []).append((name, option))
  out = []
  for group, options in groups.items():
    out += [f"### `{group}`" if group != "run" else "### The run", "",
            "| field | default | accepts | help |", "| --- | --- | --- | --- |"]
    out += [f"| `{name}` | {_value(option.default)} | {_cell(option.describe())} | "
            f"{_cell(option.help)} |" for name, option in options]
    out.append("")
  return "\n".join(out)


def _query_seconds() -> dict:
  """strategy -> {benchmark file: (seconds, pool size, query size, model)}."""
  seconds = {}
  for name in _BENCHMARKS:
    path = os.path.join(ROOT, "results", name)
    if not os.path.exists(path):
      continue
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        if record.get("what") == "query":
          seconds.setdefault(record["strategy"], {})[name] = record
  return seconds


def strategy_table() -> str:
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  timings = _query_seconds()
  columns = [name for name in _BENCHMARKS
             if any(name in by_file for by_file in timings.values())]
  heads = []
  for name in columns:
    record = next(r[name] for r in timings.values() if name in r)
    machine = f", {record['cpu_model']}" if record.get("cpu_model") else ""
    heads.append(f"query s, {record['config']} ({record['model']}, pool "
                 f"{record['pool_size']:,}, {record['query_size']} picks{machine})")
  out = ["| strategy | reads | options (`query.*`, default) | " + " | ".join(heads) + " |",
         "| --- | --- | --- | " + " | ".join("---" for _ in heads) + " |"]
  for name in strategies.names():
    cls = strategies.get(name)
    reads = ("the model (gradients)" if cls.inputs is None else
             ", ".join(f"`{i}`" for i in cls.inputs) or "nothing")
    options = "<br>".join(f"`{o}` = {_value(opt.default)}"
                          for o, opt in cls.config_fields.items()) or "-"
    cells = [f"{timings[name][c]['seconds']:.3g}" if c in timings.get(name, {}) else "-"
             for c in columns]
    out.append(f"| `{name}` | {reads} | {options} | " + " | ".join(cells) + " |")
  return "\n".join(out)


def api() -> str:
  import waal_jax  # pylint: disable=g-import-not-at-top
  return "\n\n".join(f"::: waal_jax.{name}" for name in waal_jax.__all__)


_GENERATORS = {"config-fields": config_fields, "strategy-table": strategy_table, "api": api}
