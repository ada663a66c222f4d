"""Label Studio as the oracle: a round's queries go to a Label Studio project as tasks,
and a person's annotations come back as labels.

    client = label_studio.Client.from_environment()   # LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY
    project = label_studio.Project.create(client, "my pool", class_names)
    pushed = project.push(1, picks, images=pool[picks], predicted=learner.predict(pool[picks]))
    ...                                       # a person labels them in the browser
    answers = project.pull(pushed)            # a UserError names each task not usable yet
    learner.add_labels(pushed.pool_indices, answers.labels)

Each task holds its image inline (a data: URL, which a stock server shows without any
storage set up), the pool index, the round and the rank the strategy gave it; the
model's predicted class comes with it as a pre-annotation whose score falls with
the rank (1.0 for the strategy's first pick), so sorting the project's tasks by
prediction score gives the strategy's order. The server is spoken to through its REST
API (the Python SDK would pin numpy below the version this project needs).
"""

import base64
import dataclasses
import io
import json
import mimetypes
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from typing import Callable, Dict, List, Optional, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from waal_jax.errors import UserError

URL_VARIABLE = "LABEL_STUDIO_URL"
TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"


class Client:
  """The server's REST API with one account's token: a legacy token ("Token"), or a
  personal access token (a JWT, exchanged for short-lived access tokens)."""

  def __init__(self, url: str, token: str, timeout: float = 60.0):
    if not url or not token:
      raise UserError(f"Label Studio needs its address and an API token: set {URL_VARIABLE} "
                      f"(e.g. http://localhost:8080) and {TOKEN_VARIABLE} (Account & "
                      "Settings in Label Studio) in the environment")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
      raise UserError(f"{URL_VARIABLE}={url!r} is not an http(s) address")
    self.url, self.timeout = url.rstrip("/"), timeout
    self._token = token
    self._personal = token.count(".") == 2      # a JWT: header.payload.signature
    self._access: Optional[str] = None

  @classmethod
  def from_environment(cls) -> "Client":
    """A client of the server at $LABEL_STUDIO_URL with the token $LABEL_STUDIO_API_KEY."""
    return cls(os.environ.get(URL_VARIABLE, ""), os.environ.get(TOKEN_VARIABLE, ""))

  def _authorization(self, renew: bool = False) -> str:
    if not self._personal:
      return f"Token {self._token}"
    if self._access is None or renew:
      self._access = self._send("POST", "/api/token/refresh/", {"refresh": self._token},
                                authorization=None)["access"]
    return f"Bearer {self._access}"

  def request(self, method: str, path: str, body=None, query: Optional[dict] = None):
    """The JSON answer of one API call; an error answer is a UserError in one line."""
    if query:
      path = f"{path}?{urllib.parse.urlencode(query, doseq=True)}"
    try:
      return self._send(method, path, body, self._authorization())
    except _Unauthorized:
      if not self._personal:
        raise UserError(f"Label Studio at {self.url} refused the token in {TOKEN_VARIABLE} "
                        "(401): copy it again from Account & Settings") from None
    try:        # an access token expires after minutes: take a new one, once
      return self._send(method, path, body, self._authorization(renew=True))
    except _Unauthorized:
      raise UserError(f"Label Studio at {self.url} refused the personal access token in "
                      f"{TOKEN_VARIABLE} (401): make a new one in Account & Settings") from None

  def _send(self, method: str, path: str, body, authorization: Optional[str]):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(self.url + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
      request.add_header("Content-Type", "application/json")
    if authorization:
      request.add_header("Authorization", authorization)
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        text = response.read()
    except urllib.error.HTTPError as e:
      if e.code == 401:
        raise _Unauthorized() from None
      detail = e.read()[:300].decode(errors="replace").replace("\n", " ")
      raise ApiError(e.code, f"Label Studio at {self.url}: {method} {path.split('?')[0]} "
                     f"answered {e.code} {e.reason}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
      reason = getattr(e, "reason", e)
      raise UserError(f"Label Studio at {self.url} ({URL_VARIABLE}) cannot be reached "
                      f"({reason}): start it, or set {URL_VARIABLE} to its address") from None
    return json.loads(text) if text else None


class _Unauthorized(Exception):
  pass


class ApiError(UserError):
  """The server answered a call with an error (the status is `code`)."""

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code


def label_config(class_names: Sequence[str]) -> str:
  """A labeling interface of one image and one choice among the classes."""
  choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in class_names)
  return ("<View>\n"
          '  <Image name="image" value="$image" zoom="true"/>\n'
          '  <Choices name="label" toName="image" choice="single-radio" showInline="true">\n'
          f"{choices}\n"
          "  </Choices>\n"
          "</View>\n")


@dataclasses.dataclass(frozen=True)
class Interface:
  """Which parts of a project's labeling interface hold the image and the class."""
  image_field: str      # the task data field the <Image> shows ($image -> "image")
  image_name: str       # the <Image>'s name, which the <Choices> label
  choices_name: str     # the <Choices>'s name (a result's from_name)
  choices: tuple        # the choices' values


def read_interface(config: str, where: str) -> Interface:
  """The image and the choices of a labeling interface (XML); what is missing is a
  UserError naming `where`."""
  try:
    root = ElementTree.fromstring(config)
  except ElementTree.ParseError as e:
    raise UserError(f"{where}: its labeling interface is not XML ({e})") from None
  images = [e for e in root.iter() if e.tag == "Image"]
  choices = [e for e in root.iter() if e.tag == "Choices"]
  if len(images) != 1 or len(choices) != 1:
    raise UserError(f"{where}: its labeling interface needs one <Image> and one <Choices> "
                    f"(it has {len(images)} and {len(choices)})")
  image, chooser = images[0], choices[0]
  value = image.get("value", "")
  if not value.startswith("$"):
    raise UserError(f"{where}: its <Image> shows {value!r}, not a task field ($name)")
  if chooser.get("toName") != image.get("name"):
    raise UserError(f"{where}: its <Choices> label {chooser.get('toName')!r}, not the "
                    f"<Image> {image.get('name')!r}")
  return Interface(value[1:], image.get("name"), chooser.get("name"),
                   tuple(c.get("value") for c in chooser.iter() if c.tag == "Choice"))


def image_url(image: Optional[np.ndarray] = None, path: Optional[str] = None) -> str:
  """A data: URL of an image file's bytes, or of a (H, W, C) uint8 array as PNG."""
  if path is not None:
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    try:
      with open(path, "rb") as f:
        payload = f.read()
    except OSError as e:
      raise UserError(f"{path}: cannot be read for Label Studio ({e.strerror})") from None
  else:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
    kind, payload = "image/png", buffer.getvalue()
  return f"data:{kind};base64,{base64.b64encode(payload).decode()}"


@dataclasses.dataclass(frozen=True)
class PushedRound:
  """One round's tasks in a project: task_ids[k] asks for pool_indices[k]'s label."""
  project: int
  round_index: int
  pool_indices: tuple
  task_ids: tuple

  def to_json(self) -> dict:
    """The round as JSON (what from_json reads back)."""
    return {"project": self.project, "round": self.round_index,
            "pool_indices": list(self.pool_indices), "task_ids": list(self.task_ids)}

  @classmethod
  def from_json(cls, saved: dict) -> "PushedRound":
    """The round to_json wrote."""
    return cls(int(saved["project"]), int(saved["round"]),
               tuple(int(i) for i in saved["pool_indices"]),
               tuple(int(t) for t in saved["task_ids"]))


@dataclasses.dataclass(frozen=True)
class Answers:
  """A round's labels (class indices, in the order of its pool indices) and who gave
  them: each task's annotators (Label Studio user ids) and when it was last annotated."""
  labels: np.ndarray
  annotators: List[List[int]]
  annotated_at: List[str]

  def record(self, pushed: PushedRound) -> dict:
    """What a round's record in results.json keeps of them (the labels apart)."""
    return {"project": pushed.project, "task_ids": list(pushed.task_ids),
            "annotators": self.annotators, "annotated_at": self.annotated_at}


class Project:
  """A project of image tasks with one choice among the classes."""

  def __init__(self, client: Client, project_id: int, class_names: Sequence[str]):
    self.client, self.id, self.class_names = client, int(project_id), tuple(class_names)
    try:
      details = client.request("GET", f"/api/projects/{self.id}/")
    except ApiError as e:
      if e.code == 404:
        raise UserError(f"Label Studio at {client.url} has no project {self.id} (or this "
                        "token may not see it)") from None
      raise
    self.title = details.get("title", "")
    where = f"Label Studio project {self.id} ({self.title!r})"
    self.interface = read_interface(details.get("label_config", ""), where)
    missing = [name for name in self.class_names if name not in self.interface.choices]
    if missing:
      raise UserError(f"{where}: its choices lack the class(es) {', '.join(missing)}: add "
                      "them to its labeling interface or let the run make a project")

  @classmethod
  def create(cls, client: Client, title: str, class_names: Sequence[str],
             description: str = "") -> "Project":
    """A new project whose choices are the class names."""
    made = client.request("POST", "/api/projects/", {
        "title": title[:50], "description": description,
        "label_config": label_config(class_names)})
    return cls(client, made["id"], class_names)

  @property
  def url(self) -> str:
    """Where a person labels the project's tasks."""
    return f"{self.client.url}/projects/{self.id}/data"

  def push(self, round_index: int, pool_indices: Sequence[int], *,
           images: Optional[np.ndarray] = None, files: Optional[Sequence[str]] = None,
           predicted: Optional[Sequence[int]] = None, model_version: str = "waal_jax",
           extra_data: Optional[dict] = None, ranks: Optional[Sequence[int]] = None,
           of: Optional[int] = None) -> PushedRound:
    """Imports one task per pool index, in the strategy's order: the image (from
    `images`, (n, H, W, C) uint8, or from `files`), and, with `predicted` (class
    indices), the model's prediction as a pre-annotation scored by rank: 1 - (rank -
    1) / of. `ranks` (1 = first) and `of` default to 1..n and n."""
    count = len(pool_indices)
    if (images is None) == (files is None) or len(images if files is None else files) != count:
      raise UserError(f"push: give the {count} examples' images or files (one of the two)")
    ranks = list(range(1, count + 1)) if ranks is None else [int(r) for r in ranks]
    of = count if of is None else int(of)
    interface = self.interface
    tasks = []
    for k, index in enumerate(pool_indices):
      url = image_url(path=files[k]) if files is not None else image_url(images[k])
      task = {"data": {interface.image_field: url, "pool_index": int(index),
                       "round": int(round_index), "query_rank": ranks[k], **(extra_data or {})}}
      if predicted is not None:
        task["predictions"] = [{
            "model_version": model_version, "score": round(1.0 - (ranks[k] - 1) / of, 6),
            "result": [{"from_name": interface.choices_name, "to_name": interface.image_name,
                        "type": "choices",
                        "value": {"choices": [self.class_names[int(predicted[k])]]}}]}]
      tasks.append(task)
    answer = self.client.request("POST", f"/api/projects/{self.id}/import", tasks,
                                 query={"return_task_ids": "true", "commit_to_project": "true"})
    task_ids = answer.get("task_ids") if isinstance(answer, dict) else None
    if not task_ids or len(task_ids) != count:
      raise UserError(f"Label Studio project {self.id}: the import of round {round_index}'s "
                      f"{count} tasks did not return their ids ({str(answer)[:200]})")
    return PushedRound(self.id, int(round_index), tuple(int(i) for i in pool_indices),
                       tuple(int(t) for t in task_ids))

  def _annotations(self, pushed: PushedRound, k: int) -> Optional[list]:
    """The annotations of the round's k-th task, skips included, or None if the task is
    gone: deleted, or its id now another task's (the server may give a deleted task's id
    to a new one). (The task's own record has them all; its /annotations/ list leaves
    the skips out.)"""
    try:
      task = self.client.request("GET", f"/api/tasks/{pushed.task_ids[k]}/")
    except ApiError as e:
      if e.code == 404:
        return None
      raise
    data = task.get("data", {})
    try:
      same = (task.get("project") == pushed.project
              and int(data.get("pool_index")) == pushed.pool_indices[k]
              and int(data.get("round")) == pushed.round_index)
    except (TypeError, ValueError):
      same = False
    return task.get("annotations", []) if same else None

  def annotated(self, pushed: PushedRound) -> int:
    """How many of the round's tasks have an annotation (a skip counts)."""
    return sum(1 for k in range(len(pushed.task_ids)) if self._annotations(pushed, k))

  def pull(self, pushed: PushedRound) -> Answers:
    """The round's labels; the first task that gives none (not labeled yet, skipped,
    a choice that is no class, annotations that disagree, deleted) is a UserError
    naming it and what to do."""
    labels, annotators, times, waiting = [], [], [], []
    for k, (task_id, index) in enumerate(zip(pushed.task_ids, pushed.pool_indices)):
      where = (f"Label Studio task {task_id} (pool index {index}, round "
               f"{pushed.round_index}) in project {self.id}")
      annotations = self._annotations(pushed, k)
      if annotations is None:
        raise UserError(f"{where} was deleted: rerun with --config.al.reimport=true to "
                        "import the round's deleted tasks again, then label them")
      if not annotations:
        waiting.append(task_id)
        continue
      chosen = {}
      for annotation in annotations:
        if annotation.get("was_cancelled"):
          raise UserError(f"{where} was skipped (annotation {annotation.get('id')}): label it "
                          "(or delete the skip and label it) and rerun")
        names = [c for r in annotation.get("result", [])
                 if r.get("from_name") == self.interface.choices_name
                 for c in r.get("value", {}).get("choices", [])]
        if len(names) != 1:
          raise UserError(f"{where}: annotation {annotation.get('id')} has {len(names)} "
                          "choices, not one: change it to one class and rerun")
        if names[0] not in self.class_names:
          raise UserError(f"{where}: annotation {annotation.get('id')} chose {names[0]!r}, "
                          f"which is not a class (one of {', '.join(self.class_names)}): "
                          "change it and rerun")
        who = annotation.get("completed_by")       # an id, or the user's record
        chosen[annotation.get("id")] = (names[0], who.get("id") if isinstance(who, dict) else who)
      if len({name for name, _ in chosen.values()}) > 1:
        said = ", ".join(f"{name!r} (annotation {a}, annotator {who})"
                         for a, (name, who) in chosen.items())
        raise UserError(f"{where}: its annotations disagree: {said}: delete or change all but "
                        "one class and rerun")
      labels.append(self.class_names.index(next(iter(chosen.values()))[0]))
      annotators.append(sorted({int(who) for _, who in chosen.values() if who is not None}))
      times.append(max(a.get("updated_at") or a.get("created_at") or "" for a in annotations))
    if waiting:
      shown = ", ".join(map(str, waiting[:5])) + (", ..." if len(waiting) > 5 else "")
      raise UserError(f"Label Studio project {self.id}: {len(waiting)} of round "
                      f"{pushed.round_index}'s {len(pushed.task_ids)} tasks are not labeled "
                      f"yet (tasks {shown}): label them at {self.url} and rerun")
    return Answers(np.asarray(labels, np.int32), annotators, times)

  def reimport_deleted(self, pushed: PushedRound,
                       arguments: Callable[[List[int]], Dict]) -> PushedRound:
    """`pushed` with its deleted tasks imported again; arguments(positions) gives
    push's keyword arguments (images or files, predicted, ...) for the tasks at those
    positions of the round."""
    gone = [k for k in range(len(pushed.task_ids)) if self._annotations(pushed, k) is None]
    if not gone:
      return pushed
    again = self.push(pushed.round_index, [pushed.pool_indices[k] for k in gone],
                      ranks=[k + 1 for k in gone], of=len(pushed.task_ids), **arguments(gone))
    task_ids = list(pushed.task_ids)
    for k, task_id in zip(gone, again.task_ids):
      task_ids[k] = task_id
    return dataclasses.replace(pushed, task_ids=tuple(task_ids))

  def wait(self, pushed: PushedRound, log: Callable[[str], None],
           poll_seconds: float = 10.0) -> Answers:
    """Polls until every task of the round has an annotation (saying how many have,
    when that changes), then pulls them."""
    total, last = len(pushed.task_ids), -1
    while True:
      done = self.annotated(pushed)
      if done != last:
        log(f"round {pushed.round_index}: {done}/{total} tasks labeled in Label Studio "
            f"({self.url})")
        last = done
      if done == total:
        return self.pull(pushed)
      time.sleep(poll_seconds)


# --- A run's rounds (al.oracle=label_studio) ------------------------------------------------

FOLDER = "label_studio"    # in the workdir: project.json, round_<n>.json (no token)


class RunRounds:
  """The workdir side of `al.oracle=label_studio`: the run's project (made at its first
  query unless al.label_studio_project names one) and each round's tasks, recorded in
  WORKDIR/label_studio/ so that the next process reads the same tasks back."""

  def __init__(self, workdir: str, settings, splits, log: Callable[[str], None],
               client: Optional[Client] = None):
    self.workdir, self.settings, self.splits, self.log = workdir, settings, splits, log
    self.al = settings.al
    self.client = client or Client.from_environment()
    self.class_names = tuple(splits.spec.label_names)
    self._project: Optional[Project] = None
    known = self.al.label_studio_project or self._saved_project()
    if known:                   # the server, the token and the project, checked now
      self._project = Project(self.client, known, self.class_names)
    else:
      self.client.request("GET", "/api/projects/", query={"page_size": 1})

  def _path(self, name: str) -> str:
    return os.path.join(self.workdir, FOLDER, name)

  def _saved_project(self) -> int:
    try:
      with open(self._path("project.json")) as f:
        return int(json.load(f)["project"])
    except FileNotFoundError:
      return 0
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise UserError(f"{self._path('project.json')}: unreadable ({e})") from None

  def _write(self, name: str, content: dict) -> None:
    path = self._path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(content, f)
    os.replace(tmp, path)

  @property
  def project(self) -> Project:
    """The run's project: the one known (al.label_studio_project or project.json), else
    a new one, whose id goes into project.json."""
    if self._project is None:
      name = os.path.basename(os.path.abspath(self.workdir))
      self._project = Project.create(
          self.client, f"waal_jax {name}", self.class_names,
          description=f"Queries of {self.settings.query.strategy} on "
                      f"{self.settings.data.name}, run {os.path.abspath(self.workdir)}")
      self._write("project.json", {"project": self._project.id})
      self.log(f"Label Studio project {self._project.id} made: {self._project.url}")
    return self._project

  def _pushed(self, round_index: int) -> Optional[PushedRound]:
    path = self._path(f"round_{round_index}.json")
    try:
      with open(path) as f:
        return PushedRound.from_json(json.load(f))
    except FileNotFoundError:
      return None
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise UserError(f"{path}: unreadable ({e})") from None

  def _task_arguments(self, record: dict, positions: Sequence[int]) -> dict:
    """push's keyword arguments for the queries at `positions` of a round's record: the
    images (their files, where they have them) and the network's classes."""
    indices = [record["queried_indices"][k] for k in positions]
    arguments = {"model_version": f"waal_jax {self.settings.query.strategy} round "
                                  f"{record['round']}",
                 "extra_data": {"run": os.path.basename(os.path.abspath(self.workdir))}}
    if record.get("queried_predictions") is not None:
      arguments["predicted"] = [record["queried_predictions"][k] for k in positions]
    if self.splits.pool_files is not None:
      arguments["files"] = [str(self.splits.pool_files[i]) for i in indices]
    else:
      arguments["images"] = self.splits.pool_images[np.asarray(indices, np.int64)]
    return arguments

  def ask(self, record: dict) -> str:
    """Imports the round's queries as tasks (unless done already); the line to show."""
    round_index, queried = record["round"], record["queried_indices"]
    pushed = self._pushed(round_index)
    if pushed is None:
      pushed = self.project.push(round_index, queried,
                                 **self._task_arguments(record, range(len(queried))))
      self._write(f"round_{round_index}.json", pushed.to_json())
    return (f"{len(queried)} images of round {round_index} to label in Label Studio: "
            f"{self.project.url} (tasks {pushed.task_ids[0]}-{pushed.task_ids[-1]}; sorted by "
            "prediction score they are in the strategy's order); "
            + ("waiting for them" if self.al.wait else "then rerun this command"))

  def read(self, record: dict, wait: bool) -> tuple:
    """(labels, what results.json keeps of them) of a round's tasks."""
    pushed = self._pushed(record["round"])
    if pushed is None:            # a kill came between the query and the import
      self.log(self.ask(record))
      pushed = self._pushed(record["round"])
    project = self.project
    if self.al.reimport:
      again = project.reimport_deleted(
          pushed, lambda positions: self._task_arguments(record, positions))
      if again != pushed:
        self._write(f"round_{record['round']}.json", again.to_json())
        gone = sum(a != b for a, b in zip(again.task_ids, pushed.task_ids))
        self.log(f"{gone} deleted task(s) of round {record['round']} imported again")
        pushed = again
    if wait or self.al.wait:
      answers = project.wait(pushed, self.log, self.al.poll_seconds)
    else:
      answers = project.pull(pushed)
    self.log(f"{len(answers.labels)} labels of round {record['round']} read from Label "
             f"Studio project {project.id}")
    return answers.labels, answers.record(pushed)
