"""ManifestSpec → a c2pa-python manifest definition. Pure data, no I/O, so it is easy to test.

Later features add assertions through `ManifestSpec.assertions` (generation parameters,
protection record) or the `watermark_id` argument (soft binding); nothing here changes for them.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from guard import __version__
from guard.provenance import vocab
from guard.provenance.spec import ManifestSpec

CLAIM_GENERATOR = {"name": "guard", "version": __version__}
THUMBNAIL_ID = "guard-thumbnail.jpg"


def ingredient_label(index: int) -> str:
    return f"ingredient-{index}"


def build(
    spec: ManifestSpec,
    *,
    title: str,
    mime: str,
    watermark_id: str | None = None,
    watermark_alg: str | None = None,
    fingerprint: bytes | None = None,
    thumbnail: bool = True,
) -> dict[str, Any]:
    """A parentOf ingredient makes the history start with c2pa.opened, as C2PA 2.x requires."""
    source = vocab.source_uri(spec.source)
    agent = spec.software_agent or dict(CLAIM_GENERATOR)
    labels = [ingredient_label(i) for i in range(len(spec.ingredients))]
    parents = [lab for lab, ing in zip(labels, spec.ingredients) if ing.relationship == "parentOf"]
    inputs = [lab for lab, ing in zip(labels, spec.ingredients) if ing.relationship != "parentOf"]

    main: dict[str, Any] = {"digitalSourceType": source, "softwareAgent": agent}
    params = dict(spec.action_parameters)
    if inputs:
        params["ingredientIds"] = inputs
    if params:
        main["parameters"] = params
    if parents:
        # C2PA 2.x: an asset with a parent starts with c2pa.opened on that parent.
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": parents}}]
        if spec.action != "opened" or params:
            actions.append({"action": "c2pa.edited", **main})
    else:
        actions = [{"action": "c2pa.created", **main}]

    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions.v2", "data": {"actions": actions}},
        {
            "label": "cawg.training-mining",
            "data": {"entries": {e: {"use": spec.training} for e in vocab.TRAINING_ENTRIES}},
        },
    ]
    if spec.author:
        assertions.append(
            {
                "label": "stds.schema-org.CreativeWork",
                "kind": "Json",
                "data": {
                    "@context": "https://schema.org",
                    "@type": "CreativeWork",
                    "author": [{"@type": "Person", "name": spec.author}],
                    **({"name": spec.title} if spec.title else {}),
                },
            }
        )
    if watermark_id:
        assertions.append(soft_binding(watermark_id, watermark_alg or "org.guard.watermark"))
    if fingerprint:
        assertions.append(fingerprint_binding(fingerprint))
    assertions.extend({"label": a.label, "data": a.data} for a in spec.assertions)

    definition: dict[str, Any] = {
        # chosen here rather than by the SDK, so the caller knows it without re-reading the file
        "label": f"urn:c2pa:{uuid.uuid4()}",
        "claim_generator_info": [CLAIM_GENERATOR],
        "title": spec.title or title,
        "format": mime,
        "assertions": assertions,
    }
    if thumbnail:
        definition["thumbnail"] = {"format": "image/jpeg", "identifier": THUMBNAIL_ID}
    return definition


def soft_binding(watermark_id: str, alg: str) -> dict[str, Any]:
    """C2PA soft binding: names the watermark algorithm and the value it carries.

    A match found through it is a lookup, not a cryptographic binding; verify says so.
    """
    value = base64.b64encode(bytes.fromhex(watermark_id)).decode()
    return {
        "label": "c2pa.soft-binding",
        "data": {"alg": alg, "blocks": [{"scope": {}, "value": value}]},
    }


FINGERPRINT_ALG = "org.guard.ledger.fingerprint.v1"


def fingerprint_binding(fingerprint: bytes) -> dict[str, Any]:
    """C2PA counts fingerprints as soft bindings too: the marked picture's own fingerprint, so a
    verifier can check that a file found through the watermark is this picture (guard.ledger.fingerprint).
    """
    return {
        "label": "c2pa.soft-binding",
        "data": {
            "alg": FINGERPRINT_ALG,
            "blocks": [{"scope": {}, "value": base64.b64encode(fingerprint).decode()}],
        },
    }


def soft_binding_value(data: dict[str, Any]) -> bytes | None:
    try:
        return base64.b64decode(data["blocks"][0]["value"], validate=True)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


def soft_binding_id(data: dict[str, Any]) -> str | None:
    try:
        return base64.b64decode(data["blocks"][0]["value"]).hex()
    except (KeyError, IndexError, ValueError, TypeError):
        return None
