"""Label Studio as the oracle, against a real server that the tests start.

The server is Label Studio from .venv-label-studio (`./install.sh --label-studio`),
started by experiments/label_studio.sh on a free port with a fresh database, account
and token. The tests play the person through the server's REST API, as the browser
would. Without the install the tests are skipped, unless WAAL_JAX_REQUIRE_LABEL_STUDIO
is set (CI sets it), when they fail.
"""

import base64
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_in_process, run_module
from test_user_data import CLASSES, _answer, _args, _results, _snapshot, write_folder
from waal_jax import label_studio
from waal_jax.errors import UserError

VENV = os.path.join(ROOT, ".venv-label-studio")
SERVER_SCRIPT = os.path.join(ROOT, "experiments", "label_studio.sh")
BROWSER_CHECK = os.path.join(ROOT, "experiments", "label_studio_browser.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """A Label Studio server of its own: (url, token, username, password)."""
  if not os.path.exists(os.path.join(VENV, "bin", "label-studio")):
    message = f"Label Studio is not installed in {VENV}: ./install.sh --label-studio"
    if os.environ.get("WAAL_JAX_REQUIRE_LABEL_STUDIO"):
      pytest.fail(message)
    pytest.skip(message)
  port, data = _free_port(), tmp_path_factory.mktemp("label_studio_data")
  token, password = secrets.token_hex(20), secrets.token_hex(8)
  env = dict(os.environ, LABEL_STUDIO_PORT=str(port), LABEL_STUDIO_DATA=str(data),
             LABEL_STUDIO_USERNAME="person@localhost", LABEL_STUDIO_PASSWORD=password,
             LABEL_STUDIO_API_KEY=token)
  log = open(data / "server.log", "w")
  process = subprocess.Popen(["sh", SERVER_SCRIPT], env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
  url = f"http://localhost:{port}"
  try:
    deadline = time.monotonic() + 300
    while True:
      try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
          if response.status == 200:
            break
      except OSError:
        pass
      if process.poll() is not None or time.monotonic() > deadline:
        log.flush()
        raise RuntimeError("Label Studio did not start: "
                           + (data / "server.log").read_text()[-2000:])
      time.sleep(1)
    yield {"url": url, "token": token, "username": "person@localhost", "password": password}
  finally:
    os.killpg(process.pid, signal.SIGTERM)
    try:
      process.wait(30)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def client(server):
  return label_studio.Client(server["url"], server["token"])


def _annotate(client, task_id, choice=None, skip=False):
  """What a person's Submit (or Skip) sends."""
  result = [] if skip else [{"from_name": "label", "to_name": "image", "type": "choices",
                             "value": {"choices": [choice]}}]
  return client.request("POST", f"/api/tasks/{task_id}/annotations/",
                        {"result": result, "was_cancelled": skip, "lead_time": 2.5})


def _images(count, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (count, 28, 28, 1), dtype=np.uint8)


# --- The library: push a query, pull the answers ------------------------------------------


def test_push_shows_the_images_and_predictions_and_pull_reads_the_labels(client):
  project = label_studio.Project.create(client, "push and pull", CLASSES)
  assert project.interface.choices == CLASSES
  images = _images(4)
  pushed = project.push(1, [30, 12, 7, 21], images=images, predicted=[2, 0, 0, 1])
  assert pushed.pool_indices == (30, 12, 7, 21) and len(set(pushed.task_ids)) == 4
  # Each task holds its image (the same pixels, as PNG), its pool index and rank, and
  # the network's class as a prediction scored so that the first pick sorts first.
  scores = []
  for k, task_id in enumerate(pushed.task_ids):
    task = client.request("GET", f"/api/tasks/{task_id}/")
    # (The server gives the data's numbers back as text.)
    assert [int(task["data"][f]) for f in ("pool_index", "round", "query_rank")] \
        == [pushed.pool_indices[k], 1, k + 1]
    head, payload = task["data"]["image"].split(",", 1)
    assert head == "data:image/png;base64"
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))
    assert np.array_equal(shown, images[k, ..., 0])
    predictions = client.request("GET", "/api/predictions/", query={"task": task_id})
    assert len(predictions) == 1
    assert predictions[0]["result"][0]["value"]["choices"] == [CLASSES[[2, 0, 0, 1][k]]]
    scores.append(predictions[0]["score"])
  assert scores == [1.0, 0.75, 0.5, 0.25]

  with pytest.raises(UserError, match=r"4 of round 1's 4 tasks are not labeled yet \(tasks "
                     f"{pushed.task_ids[0]}, "):
    project.pull(pushed)
  assert project.annotated(pushed) == 0
  for task_id, name in zip(pushed.task_ids, ["shirt", "boot", "coat", "coat"]):
    _annotate(client, task_id, name)
  _annotate(client, pushed.task_ids[3], "coat")      # a second annotator agrees
  answers = project.pull(pushed)
  assert answers.labels.tolist() == [2, 0, 1, 1]
  me = client.request("GET", "/api/current-user/whoami")["id"]
  assert answers.annotators == [[me]] * 4
  assert all(t.startswith(time.strftime("%Y-")) for t in answers.annotated_at)


def test_each_unusable_answer_names_its_task(client):
  project = label_studio.Project.create(client, "bad answers", CLASSES)
  pushed = project.push(2, [5, 6, 7, 8], images=_images(4), predicted=[0, 1, 2, 0])
  t = pushed.task_ids
  _annotate(client, t[0], "boot")
  _annotate(client, t[1], skip=True)
  _annotate(client, t[2], "coat")
  _annotate(client, t[2], "shirt")
  _annotate(client, t[3], "boot")

  def error():
    with pytest.raises(UserError) as caught:
      project.pull(pushed)
    return str(caught.value)

  where = lambda k: (f"Label Studio task {t[k]} (pool index {pushed.pool_indices[k]}, round 2) "
                     f"in project {project.id}")
  assert error().startswith(f"{where(1)} was skipped (annotation ")
  for annotation in client.request("GET", f"/api/tasks/{t[1]}/")["annotations"]:
    client.request("DELETE", f"/api/annotations/{annotation['id']}/")
  _annotate(client, t[1], "coat")
  message = error()
  assert message.startswith(f"{where(2)}: its annotations disagree: 'coat' (annotation ")
  assert "'shirt' (annotation " in message and "delete or change all but one" in message
  coat = client.request("GET", f"/api/tasks/{t[2]}/")["annotations"][0]["id"]
  client.request("DELETE", f"/api/annotations/{coat}/")
  client.request("DELETE", f"/api/tasks/{t[3]}/")
  assert error() == (f"{where(3)} was deleted: rerun with --config.al.reimport=true to import "
                     "the round's deleted tasks again, then label them")
  again = project.reimport_deleted(pushed, lambda positions: {
      "images": _images(4)[positions], "predicted": [0] * len(positions)})
  assert again.task_ids[:3] == t[:3]
  data = client.request("GET", f"/api/tasks/{again.task_ids[3]}/")["data"]
  assert [int(data[f]) for f in ("pool_index", "round", "query_rank")] == [8, 2, 4]
  with pytest.raises(UserError, match=r"1 of round 2's 4 tasks are not labeled yet"):
    project.pull(again)
  _annotate(client, again.task_ids[3], "boot")
  assert project.pull(again).labels.tolist() == [0, 1, 2, 0]


def test_a_project_of_the_users_own_and_its_mistakes(client, server):
  # An existing project whose interface names its parts otherwise and has a choice
  # more ("unsure"): the tasks follow its names; "unsure" is no class.
  config = ('<View><Image name="picture" value="$img"/><Choices name="class" '
            'toName="picture">' + "".join(f'<Choice value="{c}"/>' for c in CLASSES)
            + '<Choice value="unsure"/></Choices></View>')
  made = client.request("POST", "/api/projects/", {"title": "own", "label_config": config})
  project = label_studio.Project(client, made["id"], CLASSES)
  pushed = project.push(1, [3], images=_images(1), predicted=[1])
  task = client.request("GET", f"/api/tasks/{pushed.task_ids[0]}/")
  assert task["data"]["img"].startswith("data:image/png;base64,")
  client.request("POST", f"/api/tasks/{pushed.task_ids[0]}/annotations/", {"result": [{
      "from_name": "class", "to_name": "picture", "type": "choices",
      "value": {"choices": ["unsure"]}}]})
  with pytest.raises(UserError, match=r"chose 'unsure', which is not a class \(one of boot, "
                     r"coat, shirt\): change it and rerun"):
    project.pull(pushed)
  # A project that lacks a class, one that does not exist, a wrong token, no server.
  with pytest.raises(UserError, match=r"its choices lack the class\(es\) shirt"):
    label_studio.Project(client, client.request("POST", "/api/projects/", {
        "title": "two", "label_config": label_studio.label_config(CLASSES[:2])})["id"], CLASSES)
  with pytest.raises(UserError, match=r"has no project 99999 "):
    label_studio.Project(client, 99999, CLASSES)
  # A personal access token (a JWT) works as well as the legacy token.
  personal = client.request("POST", "/api/token/")["token"]
  assert label_studio.Client(server["url"], personal).request(
      "GET", "/api/current-user/whoami")["email"] == server["username"]
  with pytest.raises(UserError, match=r"refused the token in LABEL_STUDIO_API_KEY \(401\)"):
    label_studio.Client(server["url"], "not-the-token").request("GET", "/api/projects/")
  with pytest.raises(UserError, match=r"Label Studio at http://127.0.0.1:9 \(LABEL_STUDIO_URL\) "
                     r"cannot be reached"):
    label_studio.Client("http://127.0.0.1:9", "x").request("GET", "/api/projects/")
  with pytest.raises(UserError, match=r"set LABEL_STUDIO_URL .* and LABEL_STUDIO_API_KEY"):
    label_studio.Client("", "")


# --- The command line: two labeled rounds --------------------------------------------------


def _label_round(client, workdir, round_index, choose=None):
  """Labels a round's tasks as their file names say (`choose(k, name)` may change them)."""
  with open(os.path.join(workdir, label_studio.FOLDER, f"round_{round_index}.json")) as f:
    pushed = label_studio.PushedRound.from_json(json.load(f))
  names = []
  for k, task_id in enumerate(pushed.task_ids):
    files = _results(workdir)["rounds"][round_index]["queried_files"]
    name = os.path.basename(files[k]).split("_")[0]
    names.append(name if choose is None else choose(k, name))
    if names[-1] is not None:
      _annotate(client, task_id, names[-1])
  return pushed


def _same_run(a, b):
  """results.json's rounds without what differs between any two runs (seconds, the
  commit) and the Label Studio record."""
  drop = {"train_seconds", "query_seconds", "eval_seconds", "commit", "label_studio"}
  strip = lambda r: {k: v for k, v in r.items() if k not in drop and k != "epoch_metrics"}
  return [strip(r) for r in a["rounds"]] == [strip(r) for r in b["rounds"]]


@pytest.fixture(scope="module")
def runs(server, tmp_path_factory):
  """One image-folder run labeled in Label Studio, one by CSV with the same answers, and
  a copy of the first paused after round 0's query. (Run in this process, as
  conftest.run_in_process runs the command: runs to compare are all made here.)"""
  base = tmp_path_factory.mktemp("label_studio_runs")
  folder = write_folder(base / "d", train_per_class=6, test_per_class=4, unlabeled=30)
  cache = str(base / "cache")
  env = {label_studio.URL_VARIABLE: server["url"], label_studio.TOKEN_VARIABLE: server["token"]}
  studio, by_csv, paused = str(base / "studio"), str(base / "csv"), str(base / "paused")
  lines = []
  with pytest.MonkeyPatch.context() as patch:
    for name, value in env.items():
      patch.setenv(name, value)
    for step in range(3):
      log, error = run_in_process(*_args(folder, studio, cache, "--config.al.oracle=label_studio",
                                         "--config.al.rounds=2"))
      assert error is None, error
      lines.append(log)
      if step == 0:
        shutil.copytree(studio, paused)
      if step < 2:
        _label_round(label_studio.Client(server["url"], server["token"]), studio, step)
  for step in range(3):
    _, error = run_in_process(*_args(folder, by_csv, cache, "--config.al.oracle=human",
                                     "--config.al.rounds=2"))
    assert error is None, error
    if step < 2:
      _answer(by_csv, step)
  return {"folder": folder, "cache": cache, "env": env, "studio": studio, "csv": by_csv,
          "paused": paused, "lines": lines}


def test_two_rounds_labeled_in_label_studio_end_as_by_csv(runs, client, server):
  first, second, third = runs["lines"]
  project_id = json.load(open(os.path.join(runs["studio"], "label_studio", "project.json")))
  project_id = project_id["project"]
  assert f"Label Studio project {project_id} made: {server['url']}/projects/{project_id}/data" \
      in first
  assert (f"6 images of round 0 to label in Label Studio: {server['url']}/projects/"
          f"{project_id}/data (tasks ") in first and "then rerun this command" in first
  assert "6 labels of round 0 read from Label Studio project" in second
  assert "round 2/2: test accuracy" in third
  studio, by_csv = _results(runs["studio"]), _results(runs["csv"])
  assert [r["num_labeled"] for r in studio["rounds"]] == [15, 21, 27]
  assert _same_run(studio, by_csv)
  # Who labeled what, and when, beside the labels.
  me = client.request("GET", "/api/current-user/whoami")["id"]
  for record in studio["rounds"][:2]:
    kept = record["label_studio"]
    assert kept["project"] == project_id and len(kept["task_ids"]) == 6
    assert kept["annotators"] == [[me]] * 6 and len(kept["annotated_at"]) == 6
  # The network's classes went with the tasks.
  task = client.request("GET", f"/api/tasks/{studio['rounds'][1]['label_studio']['task_ids'][0]}/")
  prediction = client.request("GET", "/api/predictions/", query={"task": task["id"]})[0]
  assert prediction["result"][0]["value"]["choices"] == [
      CLASSES[studio["rounds"][1]["queried_predictions"][0]]]
  # No token, no password in any file the runs wrote.
  for workdir in (runs["studio"], runs["paused"]):
    for name, content in _snapshot(workdir).items():
      assert server["token"].encode() not in content, name
      assert server["password"].encode() not in content, name


def _fresh_copy(runs, tmp_path, monkeypatch=None) -> str:
  """The run paused after round 0's query, without its project: its next process makes
  a project of its own and imports round 0's tasks into it."""
  workdir = str(tmp_path / "w")
  shutil.copytree(runs["paused"], workdir)
  for name in ("project.json", "round_0.json"):
    os.remove(os.path.join(workdir, label_studio.FOLDER, name))
  for name, value in (runs["env"].items() if monkeypatch else ()):
    monkeypatch.setenv(name, value)
  return workdir


def test_waiting_for_the_labels_in_one_command(runs, client, tmp_path, monkeypatch):
  """al.wait=true: the run polls, says how far the labeling is, and goes on when done."""
  workdir = _fresh_copy(runs, tmp_path, monkeypatch)
  args = _args(runs["folder"], workdir, runs["cache"], "--config.al.oracle=label_studio",
               "--config.al.rounds=2", "--config.al.wait=true", "--config.al.poll_seconds=1")

  def person():                 # labels each round's tasks a while after they come
    for round_index in range(2):
      path = os.path.join(workdir, label_studio.FOLDER, f"round_{round_index}.json")
      while not os.path.exists(path):
        time.sleep(0.5)
      time.sleep(2)
      _label_round(client, workdir, round_index)

  thread = threading.Thread(target=person, daemon=True)
  thread.start()
  log, error = run_in_process(*args)
  thread.join(60)
  assert error is None, error
  for line in ("round 0: 0/6 tasks labeled in Label Studio",
               "round 0: 6/6 tasks labeled in Label Studio",
               "round 1: 0/6 tasks labeled in Label Studio",
               "round 1: 6/6 tasks labeled in Label Studio", "round 2/2: test accuracy"):
    assert line in log
  assert _same_run(_results(workdir), _results(runs["csv"]))


@pytest.mark.parametrize("case", ["not_yet", "skipped", "not_a_class", "disagree", "deleted"])
def test_a_bad_answer_stops_the_run_in_one_line_and_changes_nothing(runs, client, tmp_path,
                                                                   case, monkeypatch):
  workdir = _fresh_copy(runs, tmp_path, monkeypatch)
  args = _args(runs["folder"], workdir, runs["cache"], "--config.al.oracle=label_studio",
               "--config.al.rounds=2")
  _, error = run_in_process(*args)          # imports the tasks (again) into a new project
  assert "are not labeled yet" in error
  choose = {"not_yet": lambda k, name: None if k == 2 else name,
            "skipped": lambda k, name: name,
            "not_a_class": lambda k, name: name,
            "disagree": lambda k, name: name,
            "deleted": lambda k, name: name}[case]
  pushed = _label_round(client, workdir, 0, choose)
  task = pushed.task_ids[2]
  if case == "skipped":
    labeled = client.request("GET", f"/api/tasks/{task}/")["annotations"][0]["id"]
    client.request("DELETE", f"/api/annotations/{labeled}/")
    _annotate(client, task, skip=True)
  elif case == "not_a_class":
    project = json.load(open(os.path.join(workdir, label_studio.FOLDER, "project.json")))
    client.request("PATCH", f"/api/projects/{project['project']}/", {
        "label_config": label_studio.label_config(CLASSES + ("unsure",))})
    annotation = client.request("GET", f"/api/tasks/{task}/")["annotations"][0]["id"]
    client.request("PATCH", f"/api/annotations/{annotation}/", {"result": [{
        "from_name": "label", "to_name": "image", "type": "choices",
        "value": {"choices": ["unsure"]}}]})
  elif case == "disagree":
    given = _results(workdir)["rounds"][0]["queried_files"][2]
    other = next(c for c in CLASSES if c != os.path.basename(given).split("_")[0])
    _annotate(client, task, other)
  elif case == "deleted":
    client.request("DELETE", f"/api/tasks/{task}/")
  before = _snapshot(workdir)
  expected = {"not_yet": "1 of round 0's 6 tasks are not labeled yet",
              "skipped": f"Label Studio task {task} (pool index ",
              "not_a_class": "chose 'unsure', which is not a class",
              "disagree": "its annotations disagree",
              "deleted": "was deleted: rerun with --config.al.reimport=true"}[case]
  if case == "deleted":       # through the command: one line, exit 1
    done = run_module("experiments.main", *args, env=runs["env"])
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert expected in last and "Traceback" not in done.stderr
  else:
    _, error = run_in_process(*args)
    assert error is not None and expected in error and "\n" not in error
  if case == "skipped":
    assert "was skipped" in error
  assert _snapshot(workdir) == before
  if case == "deleted":       # the way out the line gives
    _, error = run_in_process(*args, "--config.al.reimport=true")
    assert "1 of round 0's 6 tasks are not labeled yet" in error
    _label_round(client, workdir, 0, lambda k, name: name if k == 2 else None)
    _, error = run_in_process(*args)
    assert error is None


def test_the_browser_shows_the_image_and_the_choices(runs, server, tmp_path):
  """Headless Chromium logs in as the person and opens a task of the run's project."""
  if not shutil.which("chromium") or not shutil.which("chromedriver"):
    message = "no chromium/chromedriver: ./install.sh --label-studio installs them"
    if os.environ.get("WAAL_JAX_REQUIRE_LABEL_STUDIO"):
      pytest.fail(message)
    pytest.skip(message)
  record = _results(runs["studio"])["rounds"][1]["label_studio"]
  screenshot = str(tmp_path / "task.png")
  done = subprocess.run(
      [os.path.join(VENV, "bin", "python"), BROWSER_CHECK, "--url", server["url"],
       "--username", server["username"], "--project", str(record["project"]),
       "--task", str(record["task_ids"][0]), "--screenshot", screenshot],
      env=dict(os.environ, LABEL_STUDIO_PASSWORD=server["password"]),
      capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  seen = json.loads(done.stdout.strip().splitlines()[-1])
  assert seen["image_width"] == 28 and seen["image_height"] == 28
  assert set(CLASSES) <= set(seen["choices"])
  assert Image.open(screenshot).size[0] >= 800
