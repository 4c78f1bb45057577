"""The C2PA Soft Binding Resolution API over guard's ledger, at the paths, parameter names and
result shapes of the C2PA specification's OpenAPI definition (Soft Binding Resolution API 1.0):

    GET/POST /matches/byBinding     a soft binding value -> manifest IDs
    POST     /matches/byContent     an image -> its watermark -> manifest IDs
    GET      /manifests/{id}        the stored manifest store, application/c2pa
    GET      /services/supportedAlgorithms

`value` is the base64 value guard writes in its `c2pa.soft-binding` assertion (the watermark ID).
A binding lookup is exact (similarityScore 100). A content lookup returns a record only when the
picture passes verify's content check: a mark copied onto another picture resolves to nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from guard.provenance.manifest import soft_binding_id
from guard.server.uploads import read_body
from guard.server.verifying import verify_upload

if TYPE_CHECKING:
    from guard.ledger import Record

router = APIRouter(tags=["C2PA soft binding resolution"])
MANIFEST_ID = re.compile(r"^urn:(c2pa|uuid):[A-Za-z0-9:._-]{1,200}$")
ID_HEX = re.compile(r"^[0-9a-f]{16}$")


class SoftBindingQuery(BaseModel):
    """c2pa.softBindingQuery"""

    alg: str = Field(description="soft binding algorithm name, e.g. org.guard.watermark.v1")
    value: str = Field(description="base64 of the soft binding value (guard: the watermark ID)")


class SoftBindingMatch(BaseModel):
    manifestId: str = Field(description="unique identifier of a matched C2PA Manifest")
    endpoint: str | None = Field(
        None, description="absent: the manifest is served by this API at /manifests/{manifestId}"
    )
    similarityScore: int | None = Field(None, ge=0, le=100, description="strength of the match")


class SoftBindingQueryResult(BaseModel):
    """c2pa.softBindingQueryResult"""

    matches: list[SoftBindingMatch]


class SoftBindingAlg(BaseModel):
    alg: str


class SoftBindingAlgList(BaseModel):
    """c2pa.softBindingAlgList"""

    watermarks: list[SoftBindingAlg]
    fingerprints: list[SoftBindingAlg]


MaxResults = Annotated[
    int,
    Query(
        alias="maxResults",
        ge=1,
        le=1000,
        description="The maximum number of manifest identifiers to return for each query.",
    ),
]


class _ResultArgs(TypedDict):
    """The route arguments every /matches endpoint shares, spread into its decorator."""

    response_model: type[SoftBindingQueryResult]
    response_model_exclude_none: bool


RESULT: _ResultArgs = {
    "response_model": SoftBindingQueryResult,
    "response_model_exclude_none": True,
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": 'Invalid query value (JSON: {"error": ...})'},
}


def algorithms() -> list[str]:
    """Every watermark scheme the detector reports, newest first."""
    from guard.watermark import SCHEMES

    return [SCHEMES[v] for v in sorted(SCHEMES, reverse=True)]


@router.get(
    "/services/supportedAlgorithms",
    operation_id="getSupportedBindings",
    response_model=SoftBindingAlgList,
    summary="Returns a list of the soft binding algorithms supported by the service.",
)
def supported_algorithms() -> SoftBindingAlgList:
    return SoftBindingAlgList(
        watermarks=[SoftBindingAlg(alg=a) for a in algorithms()], fingerprints=[]
    )


@router.get(
    "/matches/byBinding",
    operation_id="queryByBinding",
    summary="Returns C2PA Manifest identifiers corresponding to a soft binding.",
    responses=ERRORS,
    **RESULT,
)
def query_by_binding(
    request: Request,
    value: Annotated[str, Query(description="base64 soft binding value")],
    alg: Annotated[str, Query(description="soft binding algorithm name")],
    max_results: MaxResults = 10,
) -> dict[str, Any]:
    return _by_binding(request, alg, value, max_results)


@router.post(
    "/matches/byBinding",
    operation_id="queryByLargeBinding",
    summary="Returns C2PA Manifest identifiers corresponding to a large soft binding value.",
    responses=ERRORS,
    **RESULT,
)
def query_by_large_binding(
    request: Request, query: SoftBindingQuery, max_results: MaxResults = 10
) -> dict[str, Any]:
    return _by_binding(request, query.alg, query.value, max_results)


@router.post(
    "/matches/byContent",
    operation_id="uploadFile",
    summary="Finds C2PA Manifest identifiers using a digital asset.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "Asset to match to manifests (an image).",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        **ERRORS,
        413: {"description": "Too large"},
        415: {"description": "Invalid asset type"},
    },
    **RESULT,
)
async def upload_file(
    request: Request,
    max_results: MaxResults = 10,
    alg: Annotated[str | None, Query(description="soft binding algorithm to use")] = None,
    hint_alg: Annotated[str | None, Query(alias="hintAlg")] = None,
    hint_value: Annotated[str | None, Query(alias="hintValue")] = None,
) -> dict[str, Any]:
    """guard reads its watermark from the pixels and looks the ID up in the ledger. Hints are
    accepted and not used: an ID a client claims is never taken over what the pixels say."""
    if alg is not None and alg not in algorithms():
        raise HTTPException(400, f"unsupported alg {alg!r}; see /services/supportedAlgorithms")
    if hint_alg is not None and hint_value is None:
        raise HTTPException(400, "hintAlg needs hintValue")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith("image/"):
        raise HTTPException(415, "send the image itself as the body, with an image/* Content-Type")
    state = request.app.state
    upload = await read_body(request, state.settings.limits)
    verdict = await state.admission.run(
        lambda: verify_upload(upload, state.settings, state.ledgers.get())
    )
    found = verdict.to_dict()
    match = found.get("ledger") or {}
    # only a record verify applies to this picture: its manifest verified, and the picture is
    # the record's picture (a mark copied onto another picture resolves to nothing)
    if not match.get("match") or match.get("verified") is False:
        return {"matches": []}
    if "content_match" in match and match["content_match"] is not True:
        return {"matches": []}
    record = state.ledgers.get().get(match["watermark_id"])
    if record is None or not _resolvable(record):
        return {"matches": []}
    if match.get("content_score") is not None:  # how alike the pictures are, -1..1
        score = round(100 * min(1.0, max(0.0, float(match["content_score"]))))
    else:
        score = round(100 * float((found.get("watermark") or {}).get("bit_accuracy") or 0))
    return {"matches": [_match(record, score)][:max_results]}


@router.get(
    "/manifests/{manifestId}",
    operation_id="getManifestById",
    summary="Returns a full C2PA Manifest Store or an active C2PA Manifest.",
    response_class=Response,
    responses={
        200: {"content": {"application/c2pa": {}}, "description": "The C2PA Manifest Store"},
        400: {"description": "Invalid C2PA Manifest Id supplied"},
        404: {"description": "C2PA Manifest Id not found"},
    },
)
def get_manifest_by_id(
    request: Request,
    manifestId: str,
    return_active_manifest: Annotated[bool, Query(alias="returnActiveManifest")] = False,
) -> Response:
    """The whole manifest store is returned (it holds the active manifest and its ingredients'
    manifests), as stored when guard signed the image."""
    if not MANIFEST_ID.match(manifestId):
        raise HTTPException(400, "not a C2PA manifest identifier (urn:c2pa:…)")
    record = request.app.state.ledgers.get().by_manifest_label(manifestId)
    if record is None or not record.manifest or not _resolvable(record):
        raise HTTPException(404, "no manifest with this identifier")
    return Response(record.manifest, media_type="application/c2pa")


def _by_binding(request: Request, alg: str, value: str, max_results: int) -> dict[str, Any]:
    if alg not in algorithms():
        raise HTTPException(400, f"unsupported alg {alg!r}; see /services/supportedAlgorithms")
    wid = _binding_id(value)
    record = request.app.state.ledgers.get().get(wid)
    if record is None or not _resolvable(record):
        return {"matches": []}
    return {"matches": [_match(record, 100)][:max_results]}


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
