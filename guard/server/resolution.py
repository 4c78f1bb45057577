"""The C2PA Soft Binding Resolution API over guard's ledger, at the paths, parameter names and
result shapes of the C2PA specification's OpenAPI definition (Soft Binding Resolution API 1.0):

    GET/POST /matches/byBinding     a soft binding value -> manifest IDs
    POST     /matches/byContent     an image -> its watermark -> manifest IDs
    GET      /manifests/{id}        the stored manifest store, application/c2pa
    GET      /services/supportedAlgorithms

`value` is the base64 value guard writes in its `c2pa.soft-binding` assertion (the watermark ID).
A binding lookup is exact (similarityScore 100). A content lookup returns a record only when the
picture passes verify's content check: a mark copied onto another picture resolves to nothing.
What the ledger lacks is asked of the upstream resolvers, if any (guard.server.federation).

Answers carry `Cache-Control` and an `ETag`, and a request whose `If-None-Match` names the
answer's ETag is answered 304 without a body: a manifest store never changes under its ID (a
day), a match list may gain a record (5 minutes; 1 minute for an empty one), an upstream's answer
is `no-cache` (asked again each time, so no client keeps it longer than the upstream allowed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from guard.provenance.manifest import soft_binding_id
from guard.server.uploads import read_body

if TYPE_CHECKING:
    from guard.ledger import Record

router = APIRouter(tags=["C2PA soft binding resolution"])
MANIFEST_ID = re.compile(r"^urn:(c2pa|uuid):[A-Za-z0-9:._-]{1,200}$")
ID_HEX = re.compile(r"^[0-9a-f]{16}$")


# The specification's component schemas, under its names; /openapi.json serves them as they are
# (guard.server.app), and the answers below are built to their shape. One erratum is left out:
# the spec puts a oneOf requiring 'watermarks' or 'fingerprints' inside each {"alg"} item.
_ALG_ITEM = {"type": "object", "properties": {"alg": {"type": "string"}}, "required": ["alg"]}
SCHEMAS: dict[str, dict[str, Any]] = {
    "c2pa.softBindingAlgList": {
        "description": "The soft binding algorithms this service resolves.",
        "properties": {
            "watermarks": {"type": "array", "items": _ALG_ITEM},
            "fingerprints": {"type": "array", "items": _ALG_ITEM},
        },
    },
    "c2pa.softBindingQuery": {
        "required": ["value", "alg"],
        "type": "object",
        "properties": {
            "alg": {"type": "string", "description": "soft binding algorithm name"},
            "value": {"type": "string", "description": "base64 soft binding value"},
        },
    },
    "c2pa.softBindingQueryResult": {
        "type": "object",
        "properties": {
            "matches": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "manifestId": {"type": "string"},
                        "endpoint": {
                            "type": "string",
                            "description": "absent: served here, at /manifests/{manifestId}",
                        },
                        "similarityScore": {"type": "integer", "minimum": 0, "maximum": 100},
                    },
                    "required": ["manifestId"],
                },
            }
        },
    },
}


def _json(schema: str, description: str = "Successful operation") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


# Each operation's responses: the specification's codes and words, then what guard adds (400,
# 413, 503 for byContent), so every code the server answers is listed and no other.
FAILURE: dict[int | str, dict[str, Any]] = {500: {"description": "Service failure"}}
RESULT = _json("c2pa.softBindingQueryResult")
BY_BINDING: dict[int | str, dict[str, Any]] = {
    200: RESULT,
    400: {"description": "Invalid query value"},
    414: {"description": "Query too long, consider using POST instead"},
    **FAILURE,
}
BY_LARGE_BINDING: dict[int | str, dict[str, Any]] = {
    200: RESULT,
    400: {"description": "Invalid query value"},
    **FAILURE,
}
BY_CONTENT: dict[int | str, dict[str, Any]] = {
    200: RESULT,
    400: {"description": "Invalid query (alg, hintAlg without hintValue), or an empty body"},
    413: {"description": "The asset is over this server's size or pixel limit"},
    415: {"description": "Invalid asset type"},
    503: {"description": "The server is busy (see Retry-After)"},
    **FAILURE,
}
MANIFEST: dict[int | str, dict[str, Any]] = {
    200: {"description": "Successful operation", "content": {"application/c2pa": {}}},
    400: {"description": "Invalid C2PA Manifest Id supplied"},
    404: {"description": "C2PA Manifest Id not found"},
    **FAILURE,
}
MaxResults = Annotated[
    int,
    Query(
        alias="maxResults",
        ge=1,
        description="The maximum number of manifest identifiers to return for each query.",
    ),
]
MAX_QUERY = 2048  # bytes of query string; a guard value is 12 characters (its IDs are 8 bytes)
FOUND = "max-age=300"  # a match list may gain a record
NOT_FOUND = "max-age=60"  # ... or its first one, when it is signed
STORE = "max-age=86400"  # a manifest store never changes under its ID
PASSED_ON = "no-cache"  # an upstream's answer: asked again each time (guard.server.federation)
MAX_JSON = 64 * 1024  # a POST /matches/byBinding body


def algorithms() -> list[str]:
    """Every watermark scheme the detector reports, newest first."""
    from guard.watermark import SCHEMES

    return [SCHEMES[v] for v in sorted(SCHEMES, reverse=True)]


@router.get(
    "/services/supportedAlgorithms",
    operation_id="getSupportedBindings",
    summary="Returns a list of the soft binding algorithms supported by the service.",
    response_model=None,
    responses={200: _json("c2pa.softBindingAlgList"), **FAILURE},
)
def supported_algorithms() -> dict[str, Any]:
    return {"watermarks": [{"alg": a} for a in algorithms()], "fingerprints": []}


@router.get(
    "/matches/byBinding",
    operation_id="queryByBinding",
    summary="Returns C2PA Manifest identifiers corresponding to a soft binding.",
    response_model=None,
    responses=BY_BINDING,
)
def query_by_binding(
    request: Request,
    value: Annotated[str, Query(description="base64 soft binding value")],
    alg: Annotated[str, Query(description="soft binding algorithm name")],
    max_results: MaxResults = 10,
) -> Response:
    if len(request.url.query) > MAX_QUERY:
        raise HTTPException(414, "query too long; send it with POST /matches/byBinding")
    return _by_binding(request, alg, value, max_results)


@router.post(
    "/matches/byBinding",
    operation_id="queryByLargeBinding",
    summary="Returns C2PA Manifest identifiers corresponding to a large soft binding value.",
    response_model=None,
    responses=BY_LARGE_BINDING,
    openapi_extra={
        "requestBody": {
            "description": "Soft binding query JSON document.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/c2pa.softBindingQuery"}
                }
            },
            "required": True,
        }
    },
)
async def query_by_large_binding(request: Request, max_results: MaxResults = 10) -> Response:
    query = await _query(request)
    return await anyio.to_thread.run_sync(
        _by_binding, request, query["alg"], query["value"], max_results
    )


@router.post(
    "/matches/byContent",
    operation_id="uploadFile",
    summary="Finds C2PA Manifest identifiers using a digital asset.",
    response_model=None,
    responses=BY_CONTENT,
    openapi_extra={
        "requestBody": {
            "description": "Asset to match to manifests.",
            "content": {
                "image/*": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "Asset of type image.",
                    }
                }
            },
        }
    },
)
async def upload_file(
    request: Request,
    max_results: MaxResults = 10,
    alg: Annotated[str | None, Query(description="soft binding algorithm to use")] = None,
    hint_alg: Annotated[str | None, Query(alias="hintAlg")] = None,
    hint_value: Annotated[str | None, Query(alias="hintValue")] = None,
) -> Response:
    """guard reads its watermark from the pixels and looks the ID up in the ledger. Hints are
    accepted and not used: an ID a client claims is never taken over what the pixels say.
    `alg` names the watermark the pixels must carry: another one's finding is no match."""
    if alg is not None and alg not in algorithms():
        raise HTTPException(400, f"unsupported alg {alg!r}; see /services/supportedAlgorithms")
    if hint_alg is not None and hint_value is None:
        raise HTTPException(400, "hintAlg needs hintValue")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith("image/"):
        raise HTTPException(415, "send the image itself as the body, with an image/* Content-Type")
    state = request.app.state
    upload = await read_body(request, state.settings.limits)
    found = await state.admission.run(partial(state.checks.verdict, upload))
    body = await anyio.to_thread.run_sync(_by_content, request, found, alg, max_results)
    return _json_answer(request, body, "no-store")  # an answer about one upload


def _by_content(
    request: Request, found: dict[str, Any], alg: str | None, max_results: int
) -> dict[str, Any]:
    match = found.get("ledger") or {}
    scheme = (found.get("watermark") or {}).get("scheme")
    # only a record verify applies to this picture: its manifest verified, and the picture is
    # the record's picture (a mark copied onto another picture resolves to nothing)
    if not match.get("match") or match.get("verified") is False:
        return {"matches": []}
    if "content_match" in match and match["content_match"] is not True:
        return {"matches": []}
    if scheme is None or (alg is not None and scheme != alg):
        return {"matches": []}  # the pixels carry another algorithm's mark
    if match.get("resolver"):  # the check worker found it upstream, for the mark read here
        return {"matches": _upstream_match(request, found, match)[:max_results]}
    # the record must be bound under the algorithm the pixels carry, as byBinding's must
    record = request.app.state.ledgers.get().get(match["watermark_id"], alg=scheme)
    if record is None or not _resolvable(record):
        return {"matches": []}
    return {"matches": [_match(record, _score(found, match))][:max_results]}


def _score(found: dict[str, Any], match: dict[str, Any]) -> int:
    if match.get("content_score") is not None:  # how alike the pictures are, -1..1
        return round(100 * min(1.0, max(0.0, float(match["content_score"]))))
    return round(100 * float((found.get("watermark") or {}).get("bit_accuracy") or 0))


@router.get(
    "/manifests/{manifestId}",
    operation_id="getManifestById",
    summary="Returns a full C2PA Manifest Store or an active C2PA Manifest.",
    response_class=Response,
    responses=MANIFEST,
)
def get_manifest_by_id(
    request: Request,
    manifestId: str,
    return_active_manifest: Annotated[bool, Query(alias="returnActiveManifest")] = False,
) -> Response:
    """The whole manifest store is returned (it holds the active manifest and its ingredients'
    manifests), as stored when guard signed the image; one the ledger lacks comes from the
    upstream resolvers, as the bytes they served."""
    if not MANIFEST_ID.match(manifestId):
        raise HTTPException(400, "not a C2PA manifest identifier (urn:c2pa:…)")
    record = request.app.state.ledgers.get().by_manifest_label(manifestId)
    if record is not None and record.manifest and _resolvable(record):
        return _answer(request, record.manifest, "application/c2pa", STORE)
    federation = request.app.state.federation
    path = federation.path(request)
    store = federation.manifest(manifestId, path) if path else None
    if store is None:
        raise HTTPException(404, "no manifest with this identifier")
    return _answer(request, store, "application/c2pa", PASSED_ON)


def _by_binding(request: Request, alg: str, value: str, max_results: int) -> Response:
    """An exact lookup, of a record bound under the algorithm the query names only; one the
    ledger lacks is asked of the upstream resolvers (their matches, passed on)."""
    if alg not in algorithms():
        raise HTTPException(400, f"unsupported alg {alg!r}; see /services/supportedAlgorithms")
    wid = _binding_id(value)
    record = request.app.state.ledgers.get().get(wid, alg=alg)
    if record is not None and _resolvable(record):
        return _json_answer(request, {"matches": [_match(record, 100)][:max_results]}, FOUND)
    federation = request.app.state.federation
    path = federation.path(request)
    if path is None:
        return _json_answer(request, {"matches": []}, NOT_FOUND)
    value = base64.b64encode(bytes.fromhex(wid)).decode()
    matches = federation.matches(alg, value, max_results, path)
    return _json_answer(request, {"matches": matches}, PASSED_ON)


def _upstream_match(
    request: Request, found: dict[str, Any], match: dict[str, Any]
) -> list[dict[str, Any]]:
    """byContent's answer when the record came from an upstream: the manifest ID of the
    answer verify applied (this server serves it at /manifests through the federation)."""
    for answer in found.get("resolvers") or []:
        if answer.get("url") == match["resolver"] and answer.get("status") == "applies":
            manifest_id = answer.get("manifest_id")
            if isinstance(manifest_id, str) and MANIFEST_ID.match(manifest_id):
                request.app.state.federation.remember(manifest_id, match["resolver"])
                return [{"manifestId": manifest_id, "similarityScore": _score(found, match)}]
    return []


def _json_answer(request: Request, body: dict[str, Any], cache: str) -> Response:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return _answer(request, data, "application/json", cache)


def _answer(request: Request, data: bytes, media_type: str, cache: str) -> Response:
    """The answer with its Cache-Control and ETag; 304 when the client already holds it."""
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"Cache-Control": cache, "ETag": etag}
    held = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in held.split(",")}
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


async def _query(request: Request) -> dict[str, str]:
    """A c2pa.softBindingQuery body: a JSON object with string `alg` and `value`."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON:  # no guard value comes near: an invalid query, as the spec says
            raise HTTPException(400, f"a query body is at most {MAX_JSON // 1024} KiB")
    try:
        query = json.loads(body)
    except ValueError:
        raise HTTPException(400, 'the body is not JSON; send {"alg": ..., "value": ...}') from None
    if not isinstance(query, dict) or not all(
        isinstance(query.get(k), str) for k in ("alg", "value")
    ):
        raise HTTPException(400, 'the body must be {"alg": "<name>", "value": "<base64>"}')
    return query


def _binding_id(value: str) -> str:
    # a '+' sent unescaped in a query string arrives as a space, first or last too: turned
    # back before any other whitespace is trimmed
    text = value.replace(" ", "+").strip()
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "value is not base64") from None
    wid = soft_binding_id({"blocks": [{"value": text}]})
    if not wid or not ID_HEX.match(wid):
        raise HTTPException(400, "value is not a guard watermark ID (8 bytes, base64)")
    return wid


def _resolvable(record: Record) -> bool:
    """A record imported from elsewhere whose manifest did not verify is never served."""
    return bool(record.manifest_label) and getattr(record, "verified", None) is not False


def _match(record: Record, score: int) -> dict[str, Any]:
    return {"manifestId": record.manifest_label, "similarityScore": score}
