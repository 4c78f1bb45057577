"""img2dataset's `output_format="parquet"`: the images are in the Parquet file's `jpg` column.
guard scan used to report "0 images" and exit 0 on such an output folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import guard
from guard.cli import main
from guard.scan import export
from tests.scan_corpus import corpus


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    corpus.picture(seed, 96, 64).save(buf, "JPEG", quality=85)
    return buf.getvalue()


# img2dataset 1.47's schema for output_format="parquet" with --save_additional_columns
# '["X-Robots-Tag"]': the input's columns, then its own, then the image bytes last
SCHEMA = pa.schema(
    [
        ("X-Robots-Tag", pa.string()),
        ("caption", pa.string()),
        ("url", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("exif", pa.string()),
        ("sha256", pa.string()),
        ("jpg", pa.binary()),
    ]
)


def _row(key, image, status="success", robots=None, error=None):
    return {
        "X-Robots-Tag": robots,
        "caption": f"caption {key}",
        "url": f"http://127.0.0.1/{key}.jpg",
        "key": key,
        "status": status,
        "error_message": error,
        "width": 96 if image else None,
        "height": 64 if image else None,
        "original_width": 96 if image else None,
        "original_height": 64 if image else None,
        "exif": "{}",
        "sha256": None,
        "jpg": image,
    }


@pytest.fixture
def output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    rows = [
        _row("000000000", _jpeg(1)),
        _row("000000001", _jpeg(2), robots="noai"),
        _row(
            "000000002",
            None,
            status="failed_to_download",
            error="Use of image disallowed by X-Robots-Tag directive",
        ),
        _row("000000003", _jpeg(3)),
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / "00000.parquet")
    (out / "00000_stats.json").write_text("{}")
    # a webdataset output's metadata parquet beside a shard: the same columns, no images
    meta = pa.Table.from_pylist([{k: v for k, v in rows[0].items() if k != "jpg"}])
    pq.write_table(meta, out / "00001.parquet")
    return out


def test_an_img2dataset_parquet_output_is_scanned_row_by_row(output: Path, tmp_path: Path):
    report, keep = tmp_path / "r.parquet", tmp_path / "keep.txt"
    rows = {r.path: r for r in guard.scan([output], report=report, workers=0, watermark=False)}
    shard = str(output / "00000.parquet")
    assert set(rows) == {f"{shard}#00000000{i}.jpg" for i in (0, 1, 3)}  # the failed row: none
    assert rows[f"{shard}#000000001.jpg"].decision == "opted_out"  # its X-Robots-Tag column
    assert rows[f"{shard}#000000000.jpg"].decision == "allowed"
    assert rows[f"{shard}#000000000.jpg"].shard == shard
    export.keep_list(report, keep)
    assert keep.read_text().split() == [f"{shard}#000000000.jpg", f"{shard}#000000003.jpg"]
    # pointed at the file itself: the same rows (it used to ask for a path column)
    again = {r.path for r in guard.scan([output / "00000.parquet"], workers=0, watermark=False)}
    assert again == set(rows)


def test_a_parquet_shard_with_a_repeated_key_trusts_no_copy(tmp_path: Path):
    rows = [_row("k", _jpeg(1)), _row("k", _jpeg(2), robots="noai"), _row("j", _jpeg(3))]
    path = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    got = list(guard.scan([path], workers=0, watermark=False))
    assert [r.decision for r in got] == ["unverifiable", "opted_out", "allowed"]  # owner first
    assert all(any("more than once" in why for why in r.reasons) for r in got[:2])


def test_copy_clean_takes_the_images_out_of_the_parquet(output: Path, tmp_path: Path):
    report = tmp_path / "r.parquet"
    list(guard.scan([output], report=report, workers=0, watermark=False))
    result = export.copy_clean(report, tmp_path / "clean")
    folder = tmp_path / "clean" / "00000"
    assert sorted(p.name for p in folder.iterdir()) == [
        "000000000.jpg",
        "000000000.json",
        "000000000.txt",
        "000000003.jpg",
        "000000003.json",
        "000000003.txt",
    ]
    assert (folder / "000000000.jpg").read_bytes() == _jpeg(1)
    assert (folder / "000000003.txt").read_text() == "caption 000000003"
    assert json.loads((folder / "000000003.json").read_text())["url"].endswith("/000000003.jpg")
    assert result.copied == 2 and result.companions == 4 and result.skipped == []


def test_a_data_set_with_nothing_to_scan_is_an_input_error(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt.bak").write_text("x")
    result = CliRunner().invoke(main, ["scan", str(empty), "--report", str(tmp_path / "r.parquet")])
    assert result.exit_code == 2 and "no images, shards or path lists" in result.stderr
    with pytest.raises(guard.GuardError, match="no images"):
        list(guard.scan([empty], workers=0))
