"""What a results.json says produced it."""

import subprocess

from waal_jax import provenance


def _git(checkout, *args):
  subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=checkout,
                 check=True, capture_output=True)


def test_code_is_modified_by_code_not_by_the_results_a_run_writes(tmp_path):
  """A campaign writes its rounds into the checkout's results/: the code it ran is
  still the commit's. A changed source file, in any folder, is a modification."""
  (tmp_path / "results" / "arm").mkdir(parents=True)
  (tmp_path / "pkg").mkdir()
  (tmp_path / "results" / "arm" / "results.json").write_text("{}")
  (tmp_path / "pkg" / "train.py").write_text("x = 1\n")
  _git(tmp_path, "init", "-q")
  _git(tmp_path, "add", ".")
  _git(tmp_path, "commit", "-q", "-m", "start")
  package = str(tmp_path / "pkg")                # asked from inside the package, as software()
  assert provenance.code_modified(package) is False
  (tmp_path / "results" / "arm" / "results.json").write_text('{"rounds": []}')
  (tmp_path / "results" / "arm" / "run.lock").write_text("")
  assert provenance.code_modified(package) is False
  (tmp_path / "pkg" / "train.py").write_text("x = 2\n")
  assert provenance.code_modified(package) is True
  assert provenance.code_modified(str(tmp_path / "results")) is True


def test_the_cpu_model_is_recorded_as_proc_cpuinfo_names_it():

  with open("/proc/cpuinfo") as f:
    names = {line.split(":", 1)[1].strip() for line in f if line.startswith("model name")}
  assert provenance.software()["cpu"] in names
