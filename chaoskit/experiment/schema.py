"""The JSON Schema of the experiment format, generated from the models and every registered
plugin's Params, so editors validate and complete experiment files (including plugin keys)."""

from __future__ import annotations

import copy
from typing import Any

from chaoskit import registry
from chaoskit.experiment import model as m

SCHEMA_ID = "https://chaoskit.dev/schema/experiment-1.json"


def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Move a sub-schema's $defs into the shared defs (names are unique per model)."""
    schema = copy.deepcopy(schema)
    for k, v in schema.pop("$defs", {}).items():
        defs.setdefault(k, v)
    return schema


def _merge(common: dict[str, Any], params: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    props = dict(common.get("properties", {}))
    props.update(params.get("properties", {}))
    props[key] = {"const": name}
    req = sorted(set(params.get("required", [])) | {key})
    out = {"type": "object", "properties": props, "required": req, "additionalProperties": False}
    if params.get("description"):
        out["description"] = params["description"]
    return out


def experiment_schema() -> dict[str, Any]:
    base = m.ExperimentSpec.model_json_schema()
    defs: dict[str, Any] = base.pop("$defs", {})

    probe_common = _inline(m.ProbeSpec.model_json_schema(), defs)
    probe_variants = []
    for name, cls in registry.probes.items():
        params = _inline(cls.Params.model_json_schema(by_alias=True), defs)
        v = _merge(probe_common, params, "probe", name)
        v["description"] = getattr(cls, "summary", "")
        probe_variants.append(v)
    defs["ProbeEntry"] = {"anyOf": probe_variants}

    fault_common = _inline(m.FaultStep.model_json_schema(), defs)
    fault_variants = []
    for name, cls in registry.faults.items():
        params = _inline(cls.Params.model_json_schema(by_alias=True), defs) if getattr(cls, "Params", None) else {}
        for key in ("fault", "action"):
            common = copy.deepcopy(fault_common)
            common["properties"].pop("fault", None)
            common["properties"].pop("action", None)
            v = _merge(common, params, key, name)
            v["description"] = getattr(cls, "summary", "")
            fault_variants.append(v)
    defs["FaultStepEntry"] = {"anyOf": fault_variants}

    others = []
    for model in (m.WaitStep, m.PauseStep):
        others.append(_inline(model.model_json_schema(), defs))
    par = _inline(m.ParallelStep.model_json_schema(), defs)
    par["properties"]["parallel"] = {
        "type": "array",
        "items": {"anyOf": [{"$ref": "#/$defs/Step"}, {"type": "array", "items": {"$ref": "#/$defs/Step"}}]},
    }
    others.append(par)
    defs["Step"] = {"anyOf": [{"$ref": "#/$defs/FaultStepEntry"}, {"$ref": "#/$defs/ProbeEntry"}, *others]}

    props = base["properties"]
    props["hypothesis"] = {"type": "array", "items": {"$ref": "#/$defs/ProbeEntry"}}
    props["guards"] = {"type": "array", "items": {"$ref": "#/$defs/ProbeEntry"}}
    props["method"] = {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 1}
    props["rollbacks"] = {"type": "array", "items": {"$ref": "#/$defs/FaultStepEntry"}}
    triggers = {}
    for name, cls in registry.triggers.items():
        triggers[name] = _inline(cls.Params.model_json_schema(), defs)
    defs["When"] = {
        "type": "object",
        "properties": {**{k: {} for k in triggers}, "within": {"$ref": "#/$defs/DurationValue"},
                       "delay": {"$ref": "#/$defs/DurationValue"}, "window": {"type": "array"}},
        "additionalProperties": False,
        "description": "a trigger: " + ", ".join(triggers),
    }
    defs["DurationValue"] = {"anyOf": [{"type": "number"}, {"type": "string"}]}
    for v in fault_variants:
        v["properties"]["when"] = {"$ref": "#/$defs/When"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **base,
        "title": "chaoskit experiment",
        "$defs": defs,
    }
