"""The library's layers: the core knows nothing of workdirs, the harness nothing of
seeds, and no module imports itself back (imports inside functions included)."""

import ast
import os

from conftest import ROOT

# Each module's layer; a module may import only modules of its own layer or below.
LAYERS = {
    0: {"errors", "fields", "sharding", "banded", "xla_tuning", "objectives", "data",
        "user_data", "models", "strategies", "settings", "train", "learner",
        "label_studio", "metrics", "progress"},                             # the core
    1: {"loop", "checkpoints", "oracle", "interrupts", "provenance",
        "tensorboard_writer"},                                          # one run, one workdir
    2: {"seeds", "seed_pool"},                                          # several runs
}
LAYER_NAMES = {0: "core", 1: "run harness", 2: "orchestration"}


def _imports():
  """{module: {imported waal_jax modules}}, modules named by path under waal_jax/."""
  found = {}
  package = os.path.join(ROOT, "waal_jax")
  for folder, _, files in os.walk(package):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      module = os.path.relpath(path, package)[:-3].replace(os.sep, ".").removesuffix(".__init__")
      edges = set()
      for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("waal_jax"):
          parts = node.module.split(".")[1:]
          edges |= {".".join(parts + [a.name]) if not parts else ".".join(parts)
                    for a in node.names}
        elif isinstance(node, ast.Import):
          edges |= {a.name.split(".", 1)[1] for a in node.names
                    if a.name.startswith("waal_jax.")}
      found[module] = {e for e in edges if e and e != module}
  return found


def _layer(module: str) -> int:
  top = module.split(".")[0]
  for layer, members in LAYERS.items():
    if top in members:
      return layer
  raise AssertionError(f"waal_jax/{module}.py belongs to no layer: add it to LAYERS")


def test_every_module_imports_only_its_layer_or_below():
  for module, imported in _imports().items():
    if module == "__init__":     # the public API re-exports the core
      continue
    for other in imported:
      assert _layer(other) <= _layer(module), (
          f"{module} ({LAYER_NAMES[_layer(module)]}) imports {other} "
          f"({LAYER_NAMES[_layer(other)]})")


def test_no_import_cycle():
  graph = {m: {o.split(".")[0] if not o.startswith("strategies") else o for o in imported}
           for m, imported in _imports().items()}
  graph = {m: {o for o in e if o in graph} for m, e in graph.items()}

  def reaches(start, goal, seen):
    for nxt in graph[start]:
      if nxt == goal:
        return True
      if nxt not in seen:
        seen.add(nxt)
        if reaches(nxt, goal, seen):
          return True
    return False

  cycles = sorted(m for m in graph if reaches(m, m, set()))
  # The strategies package imports its modules, which import its base: a package and
  # its own modules are one unit.
  cycles = [m for m in cycles if not m.startswith("strategies")]
  assert not cycles, cycles
