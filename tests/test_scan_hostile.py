"""guard scan fails closed against a data set built by someone who read its source: a crafted
member name, a duplicate, an alias or a link never lets an opted-out image into the keep-list."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import guard
from guard.scan import export
from tests.scan_corpus import corpus


def _jpeg(seed: int = 3) -> bytes:
    buf = io.BytesIO()
    corpus.picture(seed, 96, 64).save(buf, "JPEG", quality=85)
    return buf.getvalue()


NOAI = json.dumps({"X-Robots-Tag": "noai"}).encode()


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, body = member
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def _scan(paths: list[Path], tmp_path: Path) -> tuple[dict[str, guard.ScanRow], list[str]]:
    report, keep = tmp_path / "r.parquet", tmp_path / "keep.txt"
    rows = {r.path: r for r in guard.scan(paths, report=report, workers=0, watermark=False)}
    export.keep_list(report, keep)
    return rows, keep.read_text(encoding="utf-8").split("\n")[:-1]


def test_a_member_name_with_a_newline_cannot_write_another_path_into_the_keep_list(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    optout = data / "optout.jpg"
    optout.write_bytes(_jpeg(1))
    optout.with_suffix(".json").write_bytes(NOAI)
    shard = _tar(tmp_path / "s.tar", [("zz\n" + str(optout), _jpeg(2)), ("fine.jpg", _jpeg(3))])
    rows, keep = _scan([data, shard], tmp_path)
    assert rows[str(optout)].decision == "opted_out"
    assert str(optout) not in keep  # the attack: the opted-out path as a line of its own
    crafted = [r for p, r in rows.items() if p.startswith(f"{shard}#zz")]
    assert [r.decision for r in crafted] == ["unverifiable"]
    assert "control character" in crafted[0].reasons[0]
    assert "\n" not in crafted[0].path  # escaped in the report too
    assert keep == [f"{shard}#fine.jpg"]


@pytest.mark.parametrize("char", ["\r", "\x1b", "\x85", "\x7f", "\u2028"])
def test_every_control_character_in_a_name_is_unverifiable(tmp_path, char):
    """(NUL cannot be in a file name, and ends a tar header's name field.)"""
    data = tmp_path / "ds"
    data.mkdir()
    (data / f"a{char}b.jpg").write_bytes(_jpeg(1))
    shard = _tar(tmp_path / "s.tar", [(f"c{char}d.jpg", _jpeg(2))])
    rows, keep = _scan([data, shard], tmp_path)
    assert len(rows) == 2
    assert all(r.decision == "unverifiable" for r in rows.values())
    assert keep == []
    assert not any(char in p for p in rows)


def test_a_loose_file_name_with_a_newline_is_unverifiable(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "x\n.jpg").write_bytes(_jpeg(1))
    (data / "ok.jpg").write_bytes(_jpeg(2))
    rows, keep = _scan([data], tmp_path)
    assert keep == [str(data / "ok.jpg")]
    [bad] = [r for p, r in rows.items() if not p.endswith("ok.jpg")]
    assert bad.decision == "unverifiable" and "\n" not in bad.path


def test_a_duplicate_member_name_makes_every_copy_unverifiable(tmp_path):
    """`tar -xf` and tarfile.getmember() return the last copy: the opted-out bytes."""
    shard = _tar(
        tmp_path / "s.tar",
        [
            ("000001.jpg", _jpeg(1)),
            ("000001.json", b"{}"),
            ("000003.jpg", _jpeg(3)),
            ("000001.jpg", _jpeg(2)),
            ("000001.json", NOAI),
        ],
    )
    rows, keep = _scan([shard], tmp_path)
    dup = [r for p, r in rows.items() if p.endswith("#000001.jpg")]
    assert dup and all(r.decision == "unverifiable" for r in dup)
    assert "more than once" in dup[0].reasons[0]
    assert keep == [f"{shard}#000003.jpg"]


@pytest.mark.parametrize("alias", ["./000002.jpg", "a/../000002.jpg", ".//000002.jpg"])
def test_an_alias_of_a_member_name_makes_both_unverifiable(tmp_path, alias):
    shard = _tar(
        tmp_path / "s.tar",
        [("000002.jpg", _jpeg(1)), (alias, _jpeg(2)), ("000003.jpg", _jpeg(3))],
    )
    rows, keep = _scan([shard], tmp_path)
    assert keep == [f"{shard}#000003.jpg"]
    assert sum(r.decision == "unverifiable" for r in rows.values()) == 2


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_a_sample_with_a_link_member_is_unverifiable(tmp_path, kind):
    """A .json stored as a link was skipped, so its noai was never read."""
    elsewhere = _tar(tmp_path / "x.tar", [])  # any path the link could point at
    link = tarfile.TarInfo("000004.json")
    link.type = kind
    link.linkname = "000009.json" if kind == tarfile.LNKTYPE else str(elsewhere)
    shard = _tar(
        tmp_path / "s.tar",
        [("000009.json", NOAI), ("000004.jpg", _jpeg(1)), link, ("000005.jpg", _jpeg(2))],
    )
    rows, keep = _scan([shard], tmp_path)
    assert rows[f"{shard}#000004.jpg"].decision == "unverifiable"
    assert "link" in rows[f"{shard}#000004.jpg"].reasons[0]
    assert keep == [f"{shard}#000005.jpg"]


@pytest.mark.parametrize("name", ["/etc/000006.jpg", "../000006.jpg"])
def test_a_member_outside_the_shard_is_unverifiable(tmp_path, name):
    shard = _tar(tmp_path / "s.tar", [(name, _jpeg(1)), ("000007.jpg", _jpeg(2))])
    rows, keep = _scan([shard], tmp_path)
    assert keep == [f"{shard}#000007.jpg"]
    assert [r.decision for p, r in rows.items() if "000006" in p] == ["unverifiable"]


def test_a_keep_list_is_never_written_from_a_report_row_with_a_control_character(tmp_path):
    """The report is an input too: a hand-edited one must not smuggle a line in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _scan([_tar(tmp_path / "s.tar", [("a.jpg", _jpeg(1))])], tmp_path)
    table = pq.read_table(tmp_path / "r.parquet")
    paths = table.column("path").to_pylist()
    paths[0] = paths[0] + "\n/etc/passwd"
    table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths))
    pq.write_table(table, tmp_path / "edited.parquet")
    with pytest.raises(guard.GuardError, match="control character"):
        export.keep_list(tmp_path / "edited.parquet", tmp_path / "keep2.txt")
    assert not os.path.exists(tmp_path / "keep2.txt")


def test_a_jpeg_scan_bomb_is_unverifiable_without_being_decoded(tmp_path):
    from tests.helpers import scan_bomb

    data = tmp_path / "ds"
    data.mkdir()
    (data / "bomb.jpg").write_bytes(scan_bomb(3000))
    (data / "ok.jpg").write_bytes(_jpeg(1))
    rows, keep = _scan([data], tmp_path)
    bomb = rows[str(data / "bomb.jpg")]
    assert bomb.decision == "unverifiable" and "more than 100 scans" in bomb.reasons[0]
    assert keep == [str(data / "ok.jpg")]
