"""Reading a ``task.toml``: every value type-checked and every name resolved, once.

A problem is one :class:`~edgefusion.errors.ConfigError` line naming the file, the key and
what was expected (rules are numbered from 1, as in the tables: ``rules[3].present``).
Unknown keys get a "did you mean". A rule that can never fire loads with a
:class:`~edgefusion.task.spec.TaskWarning`. The ``[policy]`` table is read by
:func:`edgefusion.task.policy.read_policy`, against the labels and rules read here.

Example:
    >>> task = loads_task('''
    ... name = "doorbell"
    ... modalities = ["audio", "text"]
    ... events = [{ name = "doorbell", modality = "audio" }]
    ... actions = ["none", "notify"]
    ... intents = ["mute"]
    ... default_action = "none"
    ... [[rules]]
    ... name = "ring"
    ... present = ["doorbell"]
    ... command = false
    ... action = "notify"
    ... ''')
    >>> task.decide({"doorbell"}, None), task.decide({"doorbell"}, "mute")
    ('notify', 'none')
"""

from __future__ import annotations

import re
import warnings
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from edgefusion.errors import ConfigError, unknown_name
from edgefusion.task.analysis import shadowed_rules
from edgefusion.task.policy import read_policy
from edgefusion.task.spec import DEFAULT_RULE, Event, Rule, Task, TaskWarning, Timing

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["BUILTIN_DIR", "FORMAT_VERSION", "MODALITIES", "builtin_tasks", "load_task", "loads_task"]

FORMAT_VERSION = 1
BUILTIN_DIR = Path(__file__).parent / "builtin"
#: the modalities the runtime has sources and preprocessing for
MODALITIES = ("image", "audio", "text")
# Labels end up in span files, manifests and topic names: keep them to one plain spelling.
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

TOP_KEYS = ("format_version", "name", "description", "modalities", "events", "actions", "intents",
            "default_action", "timing", "rules", "policy")
EVENT_KEYS = ("name", "modality")
RULE_KEYS = ("name", "action", "present", "present_any", "absent", "intent", "command")
TIMING_KEYS = ("command_horizon_s", "min_event_overlap_s")


@lru_cache(maxsize=1)
def builtin_tasks() -> tuple[str, ...]:
    """Names of the task specs shipped in the package (read once: the scenarios decide per frame)."""
    return tuple(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))


def load_task(where: str | Path) -> Task:
    """A built-in task by name (``"smart_home"``) or a ``task.toml`` by path."""
    if isinstance(where, str) and where in builtin_tasks():
        return _builtin(where)
    path = Path(where)
    if not path.is_file():
        if isinstance(where, str) and "/" not in where and not where.endswith(".toml"):
            raise ConfigError(f"{unknown_name('task', where, builtin_tasks())}; or give the path of a task.toml")
        raise ConfigError(f"task spec {path} does not exist; give a built-in task ({', '.join(builtin_tasks())}) "
                          "or the path of a task.toml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the task spec: {exc}") from exc
    task = _parse(text, str(path))
    _warn_shadowed(task)
    return task


@cache
def _builtin(name: str) -> Task:
    # Tasks are frozen, so one parse serves every caller.
    path = BUILTIN_DIR / f"{name}.toml"
    task = loads_task(path.read_text(encoding="utf-8"), str(path))
    if task.name != name:
        raise ConfigError(f"{path}: name: expected {name!r} (the file's name), got {task.name!r}")
    return task


def loads_task(text: str, source: str = "<string>") -> Task:
    """Parse and validate a task spec from TOML text; ``source`` names it in messages."""
    task = _parse(text, source)
    _warn_shadowed(task)
    return task


def _warn_shadowed(task: Task) -> None:
    for rule, by in shadowed_rules(task.rules, task.intents):
        what = "default_action" if rule.name == DEFAULT_RULE else f"{_rule_key(rule.index)} ({rule.name!r})"
        earlier = ", ".join(f"{_rule_key(r.index)} ({r.name!r})" for r in by)
        # stacklevel 3: the warning names the line that called load_task / loads_task
        warnings.warn(f"{task.source}: {what} can never fire: every input it matches is decided by an earlier "
                      f"rule: {earlier}; move it up or drop it", TaskWarning, stacklevel=3)


def _parse(text: str, source: str) -> Task:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return _Reader(source).task(data)


def _rule_key(index: int) -> str:
    return f"rules[{index}]"


class _Reader:
    """Turns the parsed TOML into a Task, raising at the first problem with its key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}")

    def task(self, data: dict[str, Any]) -> Task:
        self.keys("", data, TOP_KEYS)
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise self.error("format_version", f"expected {FORMAT_VERSION}, got {version!r}")
        name = self.name("name", self.required(data, "name", "the task's name"))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise self.error("description", f"expected a string, got {_shown(description)}")
        modalities = self.names("modalities", self.required(data, "modalities", "a list such as "
                                                           '["image", "audio", "text"]'))
        for i, m in enumerate(modalities):
            if m not in MODALITIES:
                raise self.error(f"modalities[{i + 1}]", str(unknown_name("modality", m, MODALITIES)))
        if not modalities:
            raise self.error("modalities", f"expected at least one of {', '.join(MODALITIES)}")
        events = self.events(data.get("events", []), modalities)
        actions = self.names("actions", self.required(data, "actions", "the list of action labels"))
        if not actions:
            raise self.error("actions", "expected at least one action label")
        intents = self.names("intents", data.get("intents", []))
        if intents and "text" not in modalities:
            raise self.error("intents", "command intents need the 'text' modality in modalities")
        default = self.name("default_action", self.required(data, "default_action",
                                                            "the action when no rule holds"))
        self.known("default_action", default, "action", actions)
        refs = {"event": tuple(e.name for e in events), "intent": intents, "action": actions}
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise self.error("rules", f"expected [[rules]] tables, got {_shown(raw_rules)}")
        rules = [self.rule(i + 1, r, refs) for i, r in enumerate(raw_rules)]
        rules.append(Rule(len(rules) + 1, DEFAULT_RULE, default))
        self.unique("rules", [r.name for r in rules], "rule names")
        timing = self.timing(data.get("timing", {}))
        policy = None if "policy" not in data else read_policy(self, data["policy"], actions, modalities, rules)
        return Task(name, modalities, events, actions, intents, tuple(rules), timing, description, self.source,
                    policy)

    def events(self, value: Any, modalities: tuple[str, ...]) -> tuple[Event, ...]:
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise self.error("events", 'expected a list of tables such as { name = "dark", modality = "image" }, '
                                       f"got {_shown(value)}")
        out = []
        for i, e in enumerate(value):
            key = f"events[{i + 1}]"
            self.keys(key, e, EVENT_KEYS)
            name = self.name(f"{key}.name", self.required(e, "name", "the event label", key))
            modality = self.name(f"{key}.modality", self.required(e, "modality", "one of the task's modalities", key))
            self.known(f"{key}.modality", modality, "modality", modalities)
            out.append(Event(name, modality))
        self.unique("events", [e.name for e in out], "event names")
        return tuple(out)

    def rule(self, index: int, data: dict[str, Any], refs: dict[str, tuple[str, ...]]) -> Rule:
        key = _rule_key(index)
        self.keys(key, data, RULE_KEYS)
        name = self.name(f"{key}.name", data.get("name", f"rule{index}"))
        if name == DEFAULT_RULE:
            raise self.error(f"{key}.name", f"{DEFAULT_RULE!r} is the name of default_action's rule; choose another")
        action = self.name(f"{key}.action", self.required(data, "action", "the action this rule decides", key))
        self.known(f"{key}.action", action, "action", refs["action"])
        conds = {}
        for cond, kind in (("present", "event"), ("present_any", "event"), ("absent", "event"), ("intent", "intent")):
            value = data.get(cond, [])
            names = self.names(f"{key}.{cond}", [value] if isinstance(value, str) else value)
            for n in names:
                self.known(f"{key}.{cond}", n, kind, refs[kind])
            conds[cond] = names
        command = data.get("command")
        if command is not None and not isinstance(command, bool):
            raise self.error(f"{key}.command", f"expected true (a command is valid) or false (none is), "
                                               f"got {_shown(command)}")
        if command is not None and not refs["intent"]:
            raise self.error(f"{key}.command", "the task has no intents, so no command is ever valid")
        forced = set(conds["present"]) | (set(conds["present_any"]) if len(conds["present_any"]) == 1 else set())
        both = sorted(forced & set(conds["absent"]))
        if both:
            raise self.error(key, f"can never hold: {both[0]!r} is both required and absent")
        if conds["present_any"] and set(conds["present_any"]) <= set(conds["absent"]):
            raise self.error(key, "can never hold: every event of present_any is also absent")
        if command is False and conds["intent"]:
            raise self.error(key, "can never hold: command = false (no command) and an intent")
        return Rule(index, name, action, conds["present"], conds["present_any"], conds["absent"],
                    conds["intent"], command)

    def timing(self, value: Any) -> Timing:
        if not isinstance(value, dict):
            raise self.error("timing", f"expected a table, got {_shown(value)}")
        self.keys("timing", value, TIMING_KEYS)
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.error(f"timing.{k}", f"expected a number of seconds, got {_shown(v)}")
            if v < 0 or (k == "command_horizon_s" and v == 0):
                sign = "positive" if k == "command_horizon_s" else "non-negative"
                raise self.error(f"timing.{k}", f"expected a {sign} number of seconds, got {v}")
            out[k] = float(v)
        return Timing(**out)

    # -- small checks -------------------------------------------------------------------

    def keys(self, where: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for k in table:
            if k not in allowed:
                raise self.error(where, str(unknown_name("key", k, allowed)))

    def required(self, table: dict[str, Any], key: str, what: str, where: str = "") -> Any:
        if key not in table:
            raise self.error(f"{where}.{key}" if where else key, f"missing; expected {what}")
        return table[key]

    def name(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a name (a string), got {_shown(value)}")
        if not _NAME.match(value):
            raise self.error(key, f"expected a lower-case name of letters, digits and '_' starting with a letter, "
                                  f"got {value!r}")
        return value

    def names(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of names, got {_shown(value)}")
        out = tuple(self.name(f"{key}[{i + 1}]", v) for i, v in enumerate(value))
        self.unique(key, out, "names")
        return out

    def unique(self, key: str, names: list[str] | tuple[str, ...], what: str) -> None:
        seen = set()
        for n in names:
            if n in seen:
                raise self.error(key, f"{n!r} appears twice; {what} must be unique")
            seen.add(n)

    def known(self, key: str, name: str, kind: str, known: tuple[str, ...]) -> None:
        if name not in known:
            if not known:
                raise self.error(key, f"unknown {kind} {name!r}: the task declares no {kind}s")
            raise self.error(key, str(unknown_name(kind, name, known)))


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
