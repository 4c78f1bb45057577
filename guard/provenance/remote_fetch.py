"""Follow a file's reference to a remote manifest store (`guard.provenance.remote`): fetch it
with the resolvers' bounded client, only when asked, and validate it against the file's own
bytes exactly as an embedded store is (the same trust anchors, the same hash binding).

A store that does not bind to these bytes is `invalid`; one that cannot be fetched leaves the
report `remote`, with a note that says why. The fetch is one bounded GET
(`guard.resolvers.client.fetch`): connect and read timeouts, a deadline for the whole body, a
size cap, no redirect followed, TLS verified, and `application/c2pa` or nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.provenance import c2pa_io, remote
from guard.provenance.report import ManifestReport, failure

if TYPE_CHECKING:
    from guard.resolvers.client import Limits


def follow(
    report: ManifestReport,
    data: bytes,
    mime: str,
    *,
    trust_pem: str | None,
    fetch: bool | Limits = False,
    link: str | None = None,
) -> ManifestReport:
    """The report for a file whose store is elsewhere. `report` is what reading the file gave
    (`remote` when it names a store itself, else `absent`); `link` is a Link header target a
    downloader recorded for it, used when the file names none. `fetch`: True (default limits)
    or the `Limits` to fetch under; False reports the reference without fetching."""
    ref = report.remote
    if report.state == "absent" and ref is None and link is not None:
        ref = remote.reference(link, "link")
        report = ManifestReport(state="remote", remote=ref, notes=list(report.notes))
    if report.state != "remote" or ref is None or ref.url is None or fetch is False:
        return report
    from guard.resolvers import client

    limits = client.Limits() if fetch is True else fetch
    try:
        store = client.fetch(ref.url, client.MANIFEST_TYPE, limits.max_manifest_bytes, limits)
    except client.ResolverError as exc:
        ref.status, ref.problem = "failed", remote.shown(str(exc))
        report.notes.append(f"the remote manifest at {ref.url} could not be fetched: {ref.problem}")
        return report
    out = c2pa_io.read(data, mime, trust_pem=trust_pem, sidecar=store)
    # what was fetched is the store itself: bytes the SDK cannot read are a damaged store, not
    # one misplaced in the file
    out.failures = [
        failure(c2pa_io.DAMAGED, f.explanation) if f.code == c2pa_io.MISPLACED else f
        for f in out.failures
    ]
    out.sidecar = False
    ref.status = "fetched"
    out.remote = ref
    out.notes = [*report.notes, *out.notes]
    return out
