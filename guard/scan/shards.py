"""WebDataset shards: a `.tar` whose members group into samples by key.

Grouping follows the WebDataset convention (and Ray's `read_webdataset`): a member's key is its
path up to the first '.' of the file name, the rest is its suffix. The members of one sample sit
next to each other: `KEY.jpg`, `KEY.json` (img2dataset's metadata), `KEY.txt`, optionally
`KEY.c2pa` (a C2PA sidecar). Every image member becomes one item. Members are read into memory
one sample at a time and never extracted to disk.

A shard is built by whoever offers the data set, so before any member is read, one pass over
the headers (`irregular_samples`) finds the samples no reader can be trusted with: split apart,
too big to hold, named twice (or under two spellings of one name: `tar -xf` and
`tarfile.getmember()` then give the last copy's bytes), holding a link, or named outside the
shard. Each of their images is one unverifiable row, and Ray is not handed their shards.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import Literal

from guard.media.safe_read import open_regular
from guard.scan.item import (
    DEFAULT_MAX_BYTES,
    IMAGE_SUFFIXES,
    MAX_META_BYTES,
    UNNAMABLE,
    Item,
    name_is_safe,
    parse_meta,
    shown,
)

# what reading a damaged or truncated shard raises (zlib: a compressed one)
SHARD_ERRORS = (OSError, tarfile.TarError, EOFError, zlib.error)
MAX_SAMPLE_MEMBERS = 256  # members of one WebDataset sample (img2dataset writes 3 or 4)
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")

SPLIT, OVERSIZED, DUPLICATE, LINK, OUTSIDE = "split", "oversized", "duplicate", "link", "outside"
UNSAFE_NAME = "unsafe name"
WORDS = {
    SPLIT: "the sample's members are not together in the shard: it cannot be read as one sample",
    DUPLICATE: (
        "the shard holds this member name more than once, or under another spelling of it "
        "('./a.jpg', 'b/../a.jpg'): tar and tarfile give one copy's bytes for it, so no copy "
        "is trusted"
    ),
    LINK: (
        "the sample has a member that is a link (or another non-regular member): its target is "
        "not what a reader of the sample gets, so the sample is not read"
    ),
    OUTSIDE: "the member's name is absolute or climbs out of the shard ('..'): not read",
    UNSAFE_NAME: UNNAMABLE,
}
_PRECEDENCE = (
    OVERSIZED,
    UNSAFE_NAME,
    OUTSIDE,
    LINK,
    DUPLICATE,
    SPLIT,
)  # the reason a row gives first


def split_key(name: str) -> tuple[str | None, str]:
    """WebDataset's key/suffix split (the same pattern as webdataset and Ray's reader):
    'a/b.seg.png' -> ('a/b', 'seg.png'); a name without one ('README', '.x') is no sample."""
    match = _KEY.match(name)
    return (match.group(1), match.group(2)) if match else (None, "")


def normal_name(name: str) -> str:
    """The member name an extractor resolves ('./a.jpg', '/a.jpg' and 'b/../a.jpg' are 'a.jpg')."""
    return posixpath.normpath("/" + name).lstrip("/")


def outside(name: str) -> bool:
    """An absolute name, or one that climbs ('..'): no sample's member should be named so."""
    return name.startswith("/") or ".." in name.split("/")


def member_path(shard: str, member: str) -> str:
    return f"{shard}#{member}"


def _is_image_suffix(suffix: str) -> bool:
    return "." + suffix.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def open_shard(shard: str, mode: Literal["r:*", "r:"] = "r:*") -> Iterator[tarfile.TarFile]:
    """A shard as a tar archive, read through `safe_read` (a pipe named x.tar is refused)."""
    with open_regular(shard) as fh, tarfile.open(fileobj=fh, mode=mode) as tar:
        yield tar


def sample_members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """(member, key, suffix) of every regular member that belongs to a sample, in tar order."""
    for member in tar:
        if member.isreg():
            key, suffix = split_key(member.name)
            if key is not None:
                yield member, key, suffix


def count_shard(shard: str) -> int | None:
    if not shard.endswith(".tar"):
        return None
    try:
        with open_shard(shard, "r:") as tar:  # uncompressed only: headers, no decompression
            return sum(1 for _, _, suffix in sample_members(tar) if _is_image_suffix(suffix))
    except SHARD_ERRORS:
        return None


def read_shard(shard: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """The images of one shard, sample by sample; a damaged shard ends with a problem item.

    A sample is held in memory until its last member (its .json may come after its image), so
    a sample is bounded: more than MAX_SAMPLE_MEMBERS members or twice the per-file limit in
    bytes (a hostile shard can name millions of members alike) becomes one unverifiable row,
    and its members are not read. Every image of an irregular sample (see `irregular_samples`)
    is an unverifiable row of its own, its bytes unread.
    """
    irregular = irregular_samples(shard, max_bytes)
    group_key: str | None = None
    group: list[tuple[str, str, tarfile.TarInfo, bytes | None]] = []
    held, overflow, reported = 0, False, set()

    def finish() -> Iterator[Item]:
        why = irregular.get(group_key or "")
        if overflow or why == OVERSIZED:
            if group_key not in reported:  # once, however many runs the sample has
                reported.add(group_key)
                yield _oversized(shard, group_key or "", max_bytes)
        elif why is not None:
            yield from _irregular(shard, group, WORDS[why])
        elif group:
            yield from _sample(shard, group)

    try:
        with open_shard(shard) as tar:
            for member in tar:
                key, suffix = split_key(member.name)
                if key is None or not (member.isreg() or key in irregular):
                    continue  # not part of a sample (a folder, a README)
                if key != group_key:
                    yield from finish()
                    group, held, overflow = [], 0, False
                group_key = key
                if overflow or irregular.get(key) == OVERSIZED:
                    continue
                data = None
                if key not in irregular and _held(member, suffix, max_bytes):
                    fh = tar.extractfile(member)
                    data = fh.read() if fh is not None else None
                group.append((key, suffix, member, data))
                held += len(data or b"")
                if len(group) > MAX_SAMPLE_MEMBERS or held > 2 * max_bytes:  # grew since
                    group, held, overflow = [], 0, True
    except SHARD_ERRORS as exc:
        yield from finish()
        yield Item(
            path=member_path(shard, ""),
            shard=shard,
            problem=f"the shard could not be read to the end ({type(exc).__name__}: {exc})",
        )
        return
    yield from finish()


def _held(member: tarfile.TarInfo, suffix: str, max_bytes: int) -> bool:
    """Whether a member is read into memory: images, .json and .c2pa, within their limits."""
    wanted = suffix in ("json", "c2pa") or _is_image_suffix(suffix)
    return wanted and member.size <= (MAX_META_BYTES if suffix == "json" else max_bytes)


def irregular_samples(shard: str, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, str]:
    """Samples no WebDataset reader can be trusted with, from the headers alone: key -> why.

    SPLIT: the members are not next to each other. Readers (guard's and Ray's) take each run
    as a sample, so an image could be read apart from the .json that opts it out.
    OVERSIZED: more members or bytes than a sample may hold in memory (see read_shard).
    DUPLICATE: a member name that occurs twice once normalised ('./a.jpg' is 'a.jpg'): every
    sample holding a copy. LINK: a sample with a member that is not a regular file (a symlink
    or hardlink .json was skipped, so its noai was never read). OUTSIDE: an absolute name or one
    with '..'. UNSAFE_NAME: a name that is not UTF-8 or holds a control character (a newline
    would write a second path into the keep-list). Such samples are unverifiable; Ray is not
    handed their shards.
    """
    runs: dict[str, int] = {}
    members: dict[str, int] = {}
    held: dict[str, int] = {}
    first_key: dict[str, str] = {}  # normalised member name -> the key it was first seen under
    found: dict[str, set[str]] = {}
    last = None
    try:
        with open_shard(shard) as tar:
            for member in tar:
                key, suffix = split_key(member.name)
                if key is None or member.isdir():
                    continue
                if key != last:
                    runs[key] = runs.get(key, 0) + 1
                    last = key
                members[key] = members.get(key, 0) + 1
                if not member.isreg():
                    found.setdefault(key, set()).add(LINK)
                    continue
                if _held(member, suffix, max_bytes):
                    held[key] = held.get(key, 0) + member.size
                name = normal_name(member.name)
                if not name_is_safe(member.name):
                    found.setdefault(key, set()).add(UNSAFE_NAME)
                if outside(member.name):
                    found.setdefault(key, set()).add(OUTSIDE)
                if name in first_key:
                    found.setdefault(key, set()).add(DUPLICATE)
                    found.setdefault(first_key[name], set()).add(DUPLICATE)
                else:
                    first_key[name] = key
    except SHARD_ERRORS:
        pass  # a damaged shard: read_shard says so
    for key, n in runs.items():
        if n > 1:
            found.setdefault(key, set()).add(SPLIT)
    for key, n in members.items():
        if n > MAX_SAMPLE_MEMBERS or held.get(key, 0) > 2 * max_bytes:
            found.setdefault(key, set()).add(OVERSIZED)
    return {key: next(w for w in _PRECEDENCE if w in whys) for key, whys in found.items()}


def _irregular(
    shard: str, group: list[tuple[str, str, tarfile.TarInfo, bytes | None]], words: str
) -> Iterator[Item]:
    for key, suffix, member, _ in group:
        if _is_image_suffix(suffix):
            yield Item(
                path=member_path(shard, shown(member.name)),
                shard=shard,
                key=shown(key),
                problem=words,
            )


def _oversized(shard: str, key: str, max_bytes: int) -> Item:
    words = (
        f"the sample {shown(key)!r} has more than {MAX_SAMPLE_MEMBERS} members or "
        f"{2 * max_bytes >> 20} MB: not read (every image of it is in this one row)"
    )
    name = shown(key)
    return Item(path=member_path(shard, name + ".*"), shard=shard, key=name, problem=words)


def _sample(
    shard: str, group: list[tuple[str, str, tarfile.TarInfo, bytes | None]]
) -> Iterator[Item]:
    by_suffix = {suffix: (member, data) for _, suffix, member, data in group}
    meta, problem = None, None
    if "json" in by_suffix:
        meta, problem = parse_meta(by_suffix["json"][1])
    sidecar = by_suffix.get("c2pa", (None, None))[1]
    for key, suffix, member, data in group:
        if not _is_image_suffix(suffix):
            continue
        if not name_is_safe(member.name):
            yield Item(
                path=member_path(shard, shown(member.name)),
                shard=shard,
                key=shown(key),
                problem=UNNAMABLE,
            )
            continue
        yield Item(
            path=member_path(shard, member.name),
            data=data,
            sidecar=sidecar,
            meta=meta,
            shard=shard,
            key=key,
            problem=problem,
            size=member.size if data is None else None,
        )
