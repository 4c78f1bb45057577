"""The Ray engine gives the local engine's report, row for row (a local Ray instance, 2 CPUs)."""

from __future__ import annotations

from pathlib import Path

import pytest

import guard
from guard.scan import report as report_mod
from tests.scan_corpus import corpus

ray = pytest.importorskip("ray")
# Ray Data warns about its own deprecated context fields when it copies the context
pytestmark = [
    pytest.mark.slow,  # a local Ray instance takes about 10 s to start
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 2**20,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def _rows(report: Path) -> dict[str, dict]:
    return {r.path: r.to_dict() for r in report_mod.read(report)}


def test_ray_engine_equals_local_engine(tmp_path: Path, local_ray, monkeypatch) -> None:
    monkeypatch.setenv("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    labels = corpus.build(tmp_path / "corpus")
    local_report, ray_report = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = dict(watermark=False, trust_files=())
    list(guard.scan([tmp_path / "corpus"], report=local_report, workers=2, **options))
    from guard.scan.api import scan_on_ray

    scan_on_ray([tmp_path / "corpus"], ray_report, **options)
    local_rows, ray_rows = _rows(local_report), _rows(ray_report)
    assert set(ray_rows) == {x.path for x in labels}
    assert ray_rows == local_rows  # every column of every row
    assert not report_mod.staging_dir(ray_report).exists()
    # resuming a finished Ray report scans nothing again and keeps every row once
    scan_on_ray([tmp_path / "corpus"], ray_report, **options)
    assert _rows(ray_report) == local_rows


def test_scan_dataset_maps_a_ray_dataset(tmp_path: Path, local_ray) -> None:
    import ray.data

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        corpus.picture(i, 96, 64).save(folder / f"{i}.jpg")
    (folder / "3.jpg").write_bytes(b"not an image")
    ds = ray.data.read_binary_files(str(folder), include_paths=True)
    rows = {Path(r["path"]).name: r for r in guard.scan_dataset(ds, watermark=False).take_all()}
    assert {n: r["decision"] for n, r in rows.items()} == {
        "0.jpg": "allowed",
        "1.jpg": "allowed",
        "2.jpg": "allowed",
        "3.jpg": "unverifiable",
    }
    assert list(rows["3.jpg"]["signals"]) == ["unreadable"]


def test_a_shard_ray_cannot_read_is_scanned_by_guards_reader(tmp_path: Path, local_ray) -> None:
    import tarfile

    whole = tmp_path / "whole"
    corpus._shard(whole / "00000.tar")  # three img2dataset samples
    with tarfile.open(whole / "00000.tar") as tar:
        torn_at = tar.getmember("000000002.jpg").offset_data + 100
    data = tmp_path / "data"
    data.mkdir()
    (data / "00000.tar").write_bytes((whole / "00000.tar").read_bytes()[:torn_at])
    from guard.scan.api import scan_on_ray

    local_report, ray_report = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    list(guard.scan([data], report=local_report, workers=0, watermark=False))
    scan_on_ray([data], ray_report, watermark=False)
    rows = _rows(ray_report)
    assert rows == _rows(local_report)
    assert rows[f"{data / '00000.tar'}#"]["decision"] == "unverifiable"


def test_files_ray_must_not_read_are_answered_by_the_driver(tmp_path: Path, local_ray) -> None:
    """Ray's readers take UTF-8 paths only, would block on a named pipe, and read a split or
    oversized sample as guard does not: such files are answered by the driver, as locally."""
    import os

    folder = tmp_path / "data"
    folder.mkdir()
    corpus.picture(1, 96, 64).save(folder / "fine.jpg")
    corpus.picture(2, 96, 64).save(os.fsencode(folder) + b"/caf\xe9.jpg", "JPEG")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "pipe.tar")
    import io
    import tarfile

    jpeg = (folder / "fine.jpg").read_bytes()
    shards = {
        "split.tar": [("a.jpg", jpeg), ("b.jpg", jpeg), ("a.json", b"{}")],  # "a" split by "b"
        "many.tar": [(f"m.{i:03d}.jpg", jpeg) for i in range(300)],  # one sample, 300 members
        "dup.tar": [("d.jpg", jpeg), ("./d.jpg", jpeg), ("ok.jpg", jpeg)],  # an alias
        "nl.tar": [("zz\n" + str(folder / "fine.jpg"), jpeg)],  # a second keep-list line
    }
    for name, members in shards.items():
        with tarfile.open(folder / name, "w") as tar:
            for member, body in members:
                info = tarfile.TarInfo(member)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    local_report, ray_report = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    list(guard.scan([folder], report=local_report, workers=1, watermark=False))
    from guard.scan.api import scan_on_ray

    scan_on_ray([folder], ray_report, watermark=False)
    rows = _rows(ray_report)
    assert rows == _rows(local_report)
    assert rows[str(folder / "caf\\xe9.jpg")]["decision"] == "unverifiable"
    assert rows[str(folder / "pipe.jpg")]["decision"] == "unverifiable"
    assert rows[str(folder / "pipe.tar") + "#"]["decision"] == "unverifiable"
    assert rows[str(folder / "split.tar") + "#a.jpg"]["decision"] == "unverifiable"
    assert rows[str(folder / "dup.tar") + "#./d.jpg"]["decision"] == "unverifiable"
    assert rows[str(folder / "dup.tar") + "#ok.jpg"]["decision"] == "allowed"
    assert [p for p in rows if "\n" in p] == []
    assert rows[str(folder / "many.tar") + "#m.*"]["decision"] == "unverifiable"
