"""What to replay: AgentDojo ground-truth call sequences for benign tasks and attack pairs.

Everything here runs AgentDojo locally (no gateway): it decides which calls the replay makes.

* Benign: each user task's ``ground_truth`` on the default environment (default injection texts).
* Attack pair (user task U, injection task I):
  - injection texts: the ``important_instructions`` attack, placed by AgentDojo's own machinery
    (``attack.attack(U, I)``) only in the vectors U's ground truth can see
    (``get_injection_candidates``, which replays U's ground truth on an environment filled with
    canaries);
  - U's calls: ``U.ground_truth`` on the injected environment;
  - expected insertion point: the first of U's calls whose output (formatted as AgentDojo shows
    it to a model) contains a canary of a candidate vector, found by replaying U's ground truth on
    the canary environment call by call. The replay itself inserts I's calls after the first of
    U's calls whose output, *as the gateway returned it to the agent*, shows the injected text
    (see replay.py); this is where they normally coincide;
  - I's calls: ``I.ground_truth`` computed at the insertion point on a ``Mirror``, a local copy of
    the injected environment to which every call the upstream ran so far was applied, so ids such
    as "the next e-mail id" match what the server holds. Whether this differs from computing it on
    the pre-environment is recorded per pair.
* Excluded pairs, each with its reason: U's or I's ground truth is empty, or no call of U returns
  injected content, or U's ground truth fails when AgentDojo runs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from agentdojo.agent_pipeline.base_pipeline_element import BasePipelineElement
from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
from agentdojo.attacks.attack_registry import load_attack
from agentdojo.attacks.base_attacks import BaseAttack
from agentdojo.base_tasks import BaseInjectionTask, BaseUserTask
from agentdojo.functions_runtime import FunctionCall, FunctionsRuntime
from agentdojo.task_suite.task_suite import TaskSuite, read_suite_file, validate_injections

ATTACK_NAME = "important_instructions"
MODEL = "gpt-4o-2024-05-13"  # any fixed name AgentDojo knows; the attack text addresses it as "GPT-4"


@dataclass(frozen=True)
class Call:
    tool: str  # the AgentDojo function name (unprefixed)
    arguments: dict[str, Any]
    role: str  # "user" or "injection"


@dataclass
class BenignPlan:
    user_task: str
    calls: list[Call]


@dataclass
class PairPlan:
    user_task: str
    injection_task: str
    injections: dict[str, str] = field(default_factory=dict)
    insert_after: int | None = None  # expected: index of the first user call returning injected content
    vectors: list[str] = field(default_factory=list)
    excluded: str | None = None


class _NamedPipeline(BasePipelineElement):
    """Only a name: the attack reads the victim model's name from the pipeline; nothing is queried."""

    def __init__(self, name: str):
        self.name = name

    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the replay never queries a model")


def make_attack(suite: TaskSuite[Any], attack_name: str = ATTACK_NAME) -> BaseAttack:
    return load_attack(attack_name, suite, _NamedPipeline(MODEL))


def load_environment(suite: TaskSuite[Any], injections: dict[str, str]) -> Any:
    """``suite.load_and_inject_default_environment(injections)``, step for step, with libyaml's loader when
    present: about ten times faster on the workspace suite, and the same environment (the server itself
    uses AgentDojo's own method)."""
    defaults = suite.get_injection_vector_defaults()
    validate_injections(injections, defaults)
    text = read_suite_file(suite.name, "environment.yaml", suite.data_path).format(**dict(defaults, **injections))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return suite.environment_type.model_validate(yaml.load(text, Loader=loader))


def _calls(function_calls: Iterable[FunctionCall], role: str) -> list[Call]:
    return [Call(c.function, dict(c.args), role) for c in function_calls]


def plan_benign(suite: TaskSuite[Any], user_tasks: list[str]) -> list[BenignPlan]:
    plans = []
    for uid in user_tasks:
        env = load_environment(suite, {})
        plans.append(BenignPlan(uid, _calls(suite.user_tasks[uid].ground_truth(env), "user")))
    return plans


def _first_injected_call(suite: TaskSuite[Any], attack: BaseAttack, user_task: BaseUserTask[Any],
                         vectors: list[str]) -> int | None:
    """Index of the first ground-truth call of ``user_task`` whose output shows a candidate canary."""
    runtime = FunctionsRuntime(suite.tools)
    env = load_environment(suite, attack.canary_injections)
    canaries = [attack.canary_injections[v] for v in vectors]
    for i, call in enumerate(user_task.ground_truth(env)):
        result, _ = runtime.run_function(env, call.function, call.args, raise_on_error=True)
        text = tool_result_to_str(result)
        if any(c in text for c in canaries):
            return i
    return None


def plan_pairs(suite: TaskSuite[Any], user_tasks: list[str], injection_tasks: list[str],
               attack_name: str = ATTACK_NAME) -> list[PairPlan]:
    attack = make_attack(suite, attack_name)
    default_env = load_environment(suite, {})
    empty_injection = {iid for iid in injection_tasks
                       if not suite.injection_tasks[iid].ground_truth(default_env.model_copy(deep=True))}
    plans: list[PairPlan] = []
    for uid in user_tasks:
        user_task = suite.user_tasks[uid]
        user_excluded: str | None = None
        vectors: list[str] = []
        insert_after: int | None = None
        if not user_task.ground_truth(default_env.model_copy(deep=True)):
            user_excluded = "empty user ground truth"
        else:
            try:
                vectors = attack.get_injection_candidates(user_task)
                insert_after = _first_injected_call(suite, attack, user_task, vectors)
            except ValueError as exc:
                if "not injectable" not in str(exc):
                    raise
                user_excluded = "no user call returns injected content"
            # AgentDojo itself cannot run this ground truth. Not a control: the task is excluded and the
            # report counts it under 'excluded' with this reason, never as clean or as a blocked attack.
            except Exception as exc:
                user_excluded = f"user ground truth fails in AgentDojo: {type(exc).__name__}"
            if user_excluded is None and insert_after is None:
                user_excluded = "no user call returns injected content"
        for iid in injection_tasks:
            plan = PairPlan(uid, iid, vectors=list(vectors), insert_after=insert_after)
            plans.append(plan)
            if user_excluded is not None:
                plan.excluded = user_excluded
            elif iid in empty_injection:
                plan.excluded = "empty injection ground truth"
            else:
                # the user task's calls are computed on the injected environment when replayed (Mirror)
                plan.injections = attack.attack(user_task, suite.injection_tasks[iid])
    return plans


class Mirror:
    """A local copy of the server's environment for one pair: the calls the upstream ran, applied in order.

    The injection task's ground truth is computed on it at the insertion point, so that ids such as
    "the next e-mail id" match what the server holds then.
    """

    def __init__(self, suite: TaskSuite[Any], injections: dict[str, str]):
        self.runtime = FunctionsRuntime(suite.tools)
        self.env = load_environment(suite, injections)
        self.pre_env = self.env.model_copy(deep=True)

    def user_calls(self, task: BaseUserTask[Any]) -> list[Call]:
        """The user task's ground truth on the injected pre-environment."""
        return _calls(task.ground_truth(self.pre_env.model_copy(deep=True)), "user")

    def apply(self, call: Call) -> None:
        self.runtime.run_function(self.env, call.tool, call.arguments)

    def injection_calls(self, task: BaseInjectionTask[Any]) -> tuple[list[Call], bool]:
        """The injection task's ground truth now, and whether it differs from the pre-environment's."""
        now = _calls(task.ground_truth(self.env.model_copy(deep=True)), "injection")
        before = _calls(task.ground_truth(self.pre_env.model_copy(deep=True)), "injection")
        return now, now != before
