"""guard scan: the labelled corpus, fail-closed behaviour, resume, the exports and the CLI."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import guard
from guard.scan import export, policy
from guard.scan import report as report_mod
from guard.scan.sources import units
from tests.scan_corpus import compare, corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory):
    """The corpus, signed under its own GUARD_HOME; scans name its ledger and CA explicitly."""
    base = tmp_path_factory.mktemp("scan_corpus")
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(home))
        mp.delenv("GUARD_LEDGER", raising=False)
        labels = corpus.build(base / "corpus")
        from guard.identity.local_ca import local_ca_pem

        ca = base / "corpus-ca.pem"
        ca.write_bytes(local_ca_pem())
    return {
        "folder": base / "corpus",
        "labels": labels,
        "ledger": home / "ledger.sqlite3",
        "ca": ca,
        "base": base,
    }


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def scanned(built, tmp_path_factory: pytest.TempPathFactory):
    """One full scan of the corpus (watermark on, two worker processes) into a report."""
    before = _digests(built["folder"])
    report = tmp_path_factory.mktemp("scan_report") / "report.parquet"
    rows = list(
        guard.scan(
            [built["folder"]],
            report=report,
            workers=2,
            ledger=built["ledger"],
            trust_files=[built["ca"]],
        )
    )
    return {"rows": rows, "report": report, "before": before}


def test_every_corpus_file_gets_its_decision_and_reason(built, scanned) -> None:
    rows = {r.path: r for r in scanned["rows"]}
    assert set(rows) == {x.path for x in built["labels"]}, "one row per corpus image, no more"
    wrong = []
    for item in built["labels"]:
        row = rows[item.path]
        if row.decision != item.decision:
            wrong.append(f"{item.path}: {row.decision} (want {item.decision}): {row.reasons}")
        elif item.signal is None and row.signals:
            wrong.append(f"{item.path}: unexpected signals {row.signals}")
        elif item.signal is not None and item.signal not in row.signals:
            wrong.append(f"{item.path}: {item.signal} not among {row.signals}")
    assert not wrong, "\n".join(wrong)
    for row in rows.values():  # every exclusion says why, in words; an allowed row says nothing
        assert bool(row.reasons) == (row.decision != "allowed"), row
        assert len(row.reasons) == len(row.signals)


def test_rows_carry_the_verify_facts(built, scanned) -> None:
    rows = {Path(r.path).name: r for r in scanned["rows"]}
    cawg = rows["c2pa_cawg_not_allowed.jpg"]
    assert (cawg.c2pa_state, cawg.c2pa_training, cawg.training) == (
        "trusted",
        "notAllowed",
        "notAllowed",
    )
    assert cawg.xmp_data_mining.endswith("DMI-PROHIBITED-AIMLTRAINING")
    legacy = rows["c2pa_legacy_not_allowed.jpg"]
    assert legacy.c2pa_legacy_training == "notAllowed" and legacy.c2pa_training is None
    stripped = rows["guard_marked_stripped.jpg"]
    assert stripped.c2pa_state == "absent" and stripped.watermark_found is True
    assert stripped.ledger_match is True and stripped.digital_source_type.endswith(
        "trainedAlgorithmicMedia"
    )
    bound = rows["c2pa_photo_allowed.jpg"]  # marked, and its own manifest names the mark
    assert bound.watermark_found is True and "watermark_unresolved" not in bound.signals
    assert rows["clean_photo.jpg"].watermark_found is False
    assert rows["comfyui.png"].generator == "ComfyUI"
    assert rows["sdxl_marked.png"].third_party_marks == [
        "Stable Diffusion XL (diffusers / Stability AI)"
    ]
    tar_row = rows["00000.tar#000000001.jpg"]
    assert tar_row.key == "000000001" and tar_row.shard.endswith("00000.tar")
    assert tar_row.x_robots_tag == "noai, noimageai"
    clean = rows["clean_photo.jpg"]
    assert (clean.format, clean.width, clean.height) == ("JPEG", corpus.W, corpus.H)
    assert clean.sha256 == hashlib.sha256(Path(clean.path).read_bytes()).hexdigest()


def test_corrupt_files_are_unverifiable_never_allowed(built, scanned) -> None:
    broken = {
        "truncated.jpg",
        "garbage.png",
        "empty.jpg",
        "bomb.png",
        "00000.tar#000000002.jpg",
    }
    rows = {Path(r.path).name: r for r in scanned["rows"]}
    for name in broken:
        assert rows[name].decision == "unverifiable", rows[name]
        assert rows[name].error, "the reason a file could not be read is in the report"
    # no policy file can let them through
    with pytest.raises(policy.PolicyError, match="always excludes"):
        policy.from_mapping({"signals": {"unreadable": "tag"}})
    assert policy.PERMISSIVE.decide([policy.Found("unreadable", "x")])[0] == "unverifiable"


def test_scan_never_modifies_an_input(built, scanned) -> None:
    assert _digests(built["folder"]) == scanned["before"]


def test_report_is_the_documented_parquet(scanned) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(scanned["report"])
    for column in (
        "path",
        "sha256",
        "decision",
        "reasons",
        "c2pa_state",
        "digital_source_type",
        "training",
        "watermark_found",
    ):
        assert column in table.column_names
    assert table.num_rows == len(scanned["rows"])
    assert not report_mod.staging_dir(scanned["report"]).exists(), "parts merged and removed"
    doc = (ROOT / "docs" / "scan.md").read_text()
    missing = [c for c in table.column_names if f"`{c}`" not in doc]
    assert not missing, f"columns not documented in docs/scan.md: {missing}"
    summary = report_mod.summarize(scanned["report"])
    assert summary.total == table.num_rows
    assert sum(summary.decisions.values()) == summary.total


def test_guard_classifies_the_corpus_where_datadiligence_fails_open(built, scanned) -> None:
    pytest.importorskip("datadiligence")
    table = compare.side_by_side(built["labels"], scanned["rows"])
    assert all(line["guard_correct"] for line in table), [
        line for line in table if not line["guard_correct"]
    ]
    said = {line["file"]: line["datadiligence"] for line in table}
    # what it does read: the legacy label and the X-Robots-Tag header
    assert said["c2pa_legacy_not_allowed.jpg"] == "not allowed"
    assert said["00000.tar#000000001.jpg"] == "not allowed"
    # fails open: a file it cannot read counts as allowed
    assert said["truncated.jpg"] == "allowed"


# -- policies ---------------------------------------------------------------------------------


def test_permissive_keeps_ai_but_honours_an_explicit_opt_out() -> None:
    ai = [policy.Found("generator_metadata", "ComfyUI metadata")]
    assert policy.STRICT.decide(ai)[0] == "ai_generated"
    decision, reasons, codes = policy.PERMISSIVE.decide(ai)
    assert decision == "allowed" and reasons == ["ComfyUI metadata"]  # kept, and tagged
    assert policy.PERMISSIVE.decide([policy.Found("xmp_training_constrained", "c")])[0] == "allowed"
    optout = [policy.Found("xmp_training_not_allowed", "no"), *ai]
    assert policy.PERMISSIVE.decide(optout)[0] == "opted_out"
    # the owner's word decides first, whatever else is found
    both = [*ai, policy.Found("c2pa_invalid", "x"), policy.Found("robots_noai", "noai")]
    decision, reasons, codes = policy.STRICT.decide(both)
    assert decision == "opted_out" and codes[0] == "robots_noai"


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_policy_file_weighs_signals(tmp_path: Path, suffix: str) -> None:
    text = {
        ".toml": 'base = "strict"\n[signals]\ngenerator_metadata = "tag"\nc2pa_ai_source = "ignore"\n',
        ".yaml": "base: strict\nsignals:\n  generator_metadata: tag\n  c2pa_ai_source: ignore\n",
    }[suffix]
    path = tmp_path / f"policy{suffix}"
    path.write_text(text)
    p = policy.load(path)
    decision, reasons, codes = p.decide(
        [policy.Found("generator_metadata", "web UI"), policy.Found("c2pa_ai_source", "AI")]
    )
    assert decision == "allowed" and reasons == ["web UI"] and "c2pa_ai_source" in codes
    assert p.decide([policy.Found("xmp_ai_source", "AI")])[0] == "ai_generated"  # base: strict


def test_policy_file_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[signals]\nno_such_signal = "tag"\n')
    with pytest.raises(policy.PolicyError, match="unknown signal"):
        policy.load(bad)
    bad.write_text('[signals]\nxmp_ai_source = "maybe"\n')
    with pytest.raises(policy.PolicyError, match="exclude, tag or ignore"):
        policy.load(bad)
    bad.write_text("not = [valid")
    with pytest.raises(policy.PolicyError, match="not valid TOML"):
        policy.load(bad)
    with pytest.raises(policy.PolicyError, match="not a policy"):
        policy.load("lenient")


# -- resume, exports --------------------------------------------------------------------------


def _small_set(folder: Path, n: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"img{i:02d}.jpg"
        corpus.picture(100 + i, 96, 64).save(path, quality=85)
        out.append(path)
    return out


def test_interrupted_scan_resumes_and_skips_finished_files(tmp_path: Path, monkeypatch) -> None:
    from guard.scan import local

    monkeypatch.setattr(local, "FLUSH_ROWS", 1)  # write every finished file at once
    files = _small_set(tmp_path / "data")
    report = tmp_path / "report.parquet"
    first = guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False)
    done = [next(first).path for _ in range(3)]
    first.close()  # interrupted: the generator is dropped after three images
    assert not report.exists() and report_mod.staging_dir(report).is_dir()
    seen = [
        r.path for r in guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False)
    ]
    assert seen == [str(p) for p in files[3:]], "the three finished files are not scanned again"
    rows = report_mod.read(report)
    assert sorted(r.path for r in rows) == sorted(str(p) for p in files)
    assert sorted(done) == [str(p) for p in files[:3]]
    # a finished report: nothing left to do, and a rerun adds no duplicate
    assert list(guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False)) == []
    assert len(report_mod.read(report)) == len(files)


def test_resume_refuses_a_report_made_with_other_settings(tmp_path: Path) -> None:
    _small_set(tmp_path / "data", 2)
    report = tmp_path / "r.parquet"
    list(guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False))
    with pytest.raises(report_mod.ReportError, match="other settings"):
        list(
            guard.scan(
                [tmp_path / "data"], report=report, workers=0, policy="permissive", watermark=False
            )
        )
    rows = list(
        guard.scan(
            [tmp_path / "data"],
            report=report,
            workers=0,
            policy="permissive",
            watermark=False,
            fresh=True,
        )
    )
    assert len(rows) == 2


def test_copy_clean_holds_exactly_the_allowed_images(built, scanned, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    result = export.copy_clean(scanned["report"], out)
    allowed = [r for r in scanned["rows"] if r.decision == "allowed"]
    files = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()}
    copied = {k: p for k, p in files.items() if p.suffix not in (".txt", ".json", ".c2pa")}
    assert result.copied == len(allowed) == len(copied) and not result.skipped
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in copied.values())
    assert digests == sorted(r.sha256 for r in allowed), "byte-identical copies of the allowed"
    assert "img2dataset/00000/000000000.jpg" in copied  # shard samples go under their shard
    # each allowed sample's caption and metadata travel with it, and only those
    companions = files.keys() - copied.keys()
    assert result.companions == len(companions) > 0
    assert {"img2dataset/00000/000000000.txt", "img2dataset/00000/000000000.json"} <= companions
    stems = {k.rsplit(".", 1)[0] for k in copied}
    assert all(k.rsplit(".", 1)[0] in stems for k in companions)
    assert files["img2dataset/00000/000000000.txt"].read_bytes() == b"a picture"
    again = export.copy_clean(scanned["report"], out)  # a second run overwrites nothing
    assert again.copied == again.companions == 0 and again.already_there == len(allowed)
    assert not again.skipped
    keep = tmp_path / "keep.txt"
    assert export.keep_list(scanned["report"], keep) == len(allowed)
    assert keep.read_text().splitlines() == [r.path for r in allowed]


def test_copy_clean_takes_a_report_in_any_row_order(tmp_path: Path) -> None:
    """copy-clean streams the report and reads a shard per run of its rows: a report whose
    shard rows are scattered between loose files (Ray writes in no order) gives the same copy."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _small_set(tmp_path / "data", 3)
    members = []
    for i in range(3):
        buf = io.BytesIO()
        corpus.picture(40 + i, 96, 64).save(buf, "JPEG", quality=85)
        members += [(f"s{i}.jpg", buf.getvalue()), (f"s{i}.txt", f"caption {i}".encode())]
    _tar(tmp_path / "data" / "shard.tar", members)
    report = tmp_path / "r.parquet"
    list(guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False))
    table = pq.read_table(report)
    shard_rows = [i for i, v in enumerate(table.column("shard").to_pylist()) if v]
    loose_rows = [i for i, v in enumerate(table.column("shard").to_pylist()) if not v]
    assert len(shard_rows) == len(loose_rows) == len(files)
    order = [i for pair in zip(shard_rows, loose_rows, strict=True) for i in pair]
    scattered = tmp_path / "scattered.parquet"  # shard, loose, shard, loose, ...
    pq.write_table(table.take(pa.array(order)), scattered)
    ordered_copy = export.copy_clean(report, tmp_path / "a")
    scattered_copy = export.copy_clean(scattered, tmp_path / "b")
    assert (ordered_copy.copied, ordered_copy.companions) == (6, 3)
    assert (scattered_copy.copied, scattered_copy.companions) == (6, 3)
    assert not scattered_copy.skipped

    def tree(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    assert tree(tmp_path / "b") == tree(tmp_path / "a")
    assert tree(tmp_path / "a")["shard/s1.txt"] == b"caption 1"


def test_copy_clean_brings_a_loose_images_caption_and_sidecar(tmp_path: Path) -> None:
    files = _small_set(tmp_path / "data", 2)
    files[0].with_suffix(".txt").write_text("a red cube")
    files[0].with_suffix(".json").write_text('{"url": "https://example.com/0.jpg"}')
    report = tmp_path / "r.parquet"
    list(guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False))
    corpus.picture(999, 96, 64).save(files[1], quality=85)  # changed: neither it nor companions
    files[1].with_suffix(".txt").write_text("not copied")
    result = export.copy_clean(report, tmp_path / "clean")
    assert (result.copied, result.companions) == (1, 2)
    assert (tmp_path / "clean" / "img00.txt").read_text() == "a red cube"
    assert (tmp_path / "clean" / "img00.json").exists()
    assert not (tmp_path / "clean" / "img01.txt").exists()


def test_copy_clean_skips_a_file_changed_since_the_scan(tmp_path: Path) -> None:
    files = _small_set(tmp_path / "data", 2)
    report = tmp_path / "r.parquet"
    list(guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False))
    corpus.picture(999, 96, 64).save(files[0], quality=85)  # replaced after the scan
    result = export.copy_clean(report, tmp_path / "clean")
    assert result.copied == 1 and "changed since it was scanned" in result.skipped[0]


# -- sources, fail closed ---------------------------------------------------------------------


def test_sources_folders_lists_and_shards(built, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = built["folder"]
    walked = list(units([folder]))
    assert any(u.kind == "shard" for u in walked) and all(".parquet" not in u.id for u in walked)
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"# two files\n{folder / 'webui.png'}\n\n{folder / 'img2dataset/00000.tar'}\n"
    )
    assert [(Path(u.id).name, u.kind) for u in units([listing])] == [
        ("webui.png", "file"),
        ("00000.tar", "shard"),
    ]
    relative = folder / "rel.txt"  # entries relative to the list's folder
    relative.write_text("webui.png\n")
    assert [u.id for u in units([relative])] == [str(folder / "webui.png")]
    relative.unlink()
    table = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": [str(folder / "novelai.png")], "score": [0.3]}), table)
    assert [Path(u.id).name for u in units([table])] == ["novelai.png"]
    with pytest.raises(guard.GuardError, match="no such file"):
        list(units([tmp_path / "missing"]))


def test_a_damaged_shard_gives_rows_and_an_unverifiable_row(built, tmp_path: Path) -> None:
    shard = built["folder"] / "img2dataset" / "00000.tar"
    cut = tmp_path / "cut.tar"
    import tarfile

    with tarfile.open(shard) as tar:
        torn = tar.getmember("000000002.jpg").offset_data + 100
    cut.write_bytes(shard.read_bytes()[:torn])  # the last sample's image is torn mid-way
    rows = list(guard.scan([cut], workers=0, watermark=False))
    assert rows[0].decision == "allowed"
    assert rows[-1].decision == "unverifiable" and rows[-1].path.endswith("#")
    assert any("could not be read to the end" in r for r in rows[-1].reasons)


def test_a_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    (path,) = _small_set(tmp_path, 1)
    (row,) = guard.scan([path], workers=0, max_bytes=100)
    assert row.decision == "unverifiable" and row.signals == ["too_large"]
    assert row.sha256 is None  # never read


def test_unsupported_image_files_are_listed_as_unverifiable(tmp_path: Path) -> None:
    corpus.picture(5, 64, 64).save(tmp_path / "anim.gif")
    (row,) = guard.scan([tmp_path], workers=0, watermark=False)
    assert row.path.endswith("anim.gif") and row.decision == "unverifiable"


# -- library and CLI --------------------------------------------------------------------------


def test_guard_scan_is_callable_after_its_submodules_load(tmp_path: Path) -> None:
    import guard.scan.policy  # binds the package to the name guard.scan

    _small_set(tmp_path, 1)
    assert [r.decision for r in guard.scan([tmp_path], workers=0, watermark=False)] == ["allowed"]


def test_importing_guard_scan_loads_neither_ray_nor_pyarrow() -> None:
    code = (
        "import sys, guard, guard.scan, guard.scan.api, guard.cli.scan\n"
        "print(sorted(m for m in ('ray', 'pyarrow', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_scan_keep_list_json_and_summary_chart(tmp_path: Path) -> None:
    from guard.cli import main

    files = _small_set(tmp_path / "data", 3)
    (tmp_path / "data" / "broken.jpg").write_bytes(files[0].read_bytes()[:200])
    runner = CliRunner()
    report, keep = tmp_path / "r.parquet", tmp_path / "keep.txt"
    result = runner.invoke(
        main,
        [
            "scan",
            str(tmp_path / "data"),
            "--report",
            str(report),
            "--keep-list",
            str(keep),
            "--workers",
            "0",
            "--no-watermark",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert out["decisions"] == {"allowed": 3, "opted_out": 0, "ai_generated": 0, "unverifiable": 1}
    assert keep.read_text().splitlines() == [str(p) for p in files]
    chart = tmp_path / "chart.png"
    result = runner.invoke(main, ["scan", "--summary", str(report), "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert "unverifiable" in result.output and "unreadable" in result.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_scan_usage_errors(tmp_path: Path) -> None:
    from guard.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["scan"]).exit_code == 2
    bad = runner.invoke(main, ["scan", str(tmp_path), "--policy", "lenient"])
    assert bad.exit_code == 2 and "not a policy" in bad.output
    missing = runner.invoke(main, ["scan", "--summary", str(tmp_path / "none.parquet")])
    assert missing.exit_code == 2 and "no such report" in missing.output


def test_cli_scan_draws_no_progress_bar_into_a_redirected_stderr(tmp_path: Path) -> None:
    """`guard scan DIR 2> log`: the log gets no tqdm frames (the bar is drawn on a terminal
    only); CliRunner's stderr is not a terminal."""
    from guard.cli import main

    _small_set(tmp_path / "data", 3)
    report = tmp_path / "r.parquet"
    args = ["scan", str(tmp_path / "data"), "--report", str(report), "--workers", "0"]
    result = CliRunner().invoke(main, [*args, "--no-watermark"])
    assert result.exit_code == 0, result.output
    assert report.is_file() and "allowed" in result.stdout
    assert "\r" not in result.stderr and "scanning" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_cli_scan_draws_its_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    _small_set(tmp_path / "data", 2)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    args = ["scan", str(tmp_path / "data"), "--report", str(tmp_path / "r.parquet")]
    done = subprocess.run(
        [sys.executable, "-m", "guard", *args, "--workers", "0", "--no-watermark"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        cwd=ROOT,
        timeout=120,
    )
    os.close(follower)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer has gone
        while chunk := os.read(leader, 65536):
            seen += chunk
    os.close(leader)
    assert done.returncode == 0
    assert b"\rscanning: 100%" in seen


# -- the readers in core ----------------------------------------------------------------------


def test_generator_tags_need_the_tools_own_format() -> None:
    from guard.provenance.generator_tags import find

    assert find({"parameters": corpus.WEBUI_PARAMETERS})[0].generator == "Stable Diffusion web UI"
    assert find({"prompt": json.dumps(corpus.COMFY_PROMPT)})[0].generator == "ComfyUI"
    assert find({"Comment": json.dumps(corpus.NOVELAI_COMMENT)})[0].generator == "NovelAI"
    assert find({}, software="NovelAI")[0].key == "EXIF Software"
    assert find({"parameters": json.dumps({"sui_image_params": {}})})[0].generator == "SwarmUI"
    assert find({"invokeai_metadata": "{}"})[0].generator == "InvokeAI"
    # the same keys holding ordinary text are not generator metadata
    assert find({"parameters": "exposure +1, contrast: low"}) == []
    assert find({"prompt": "say cheese", "workflow": "raw -> jpeg", "Comment": "holiday"}) == []
    assert find({}, software="Adobe Photoshop 25.0") == []


def test_robots_tag_directives_as_img2dataset_reads_them() -> None:
    from guard.provenance import robots_tag

    assert robots_tag.opt_out({"headers": {"x-robots-tag": "noindex, noimageai"}})
    assert robots_tag.opt_out({"X-Robots-Tag": "noindex, nofollow"}) is None
    scoped = {"X-Robots-Tag": ["img2dataset: noai"]}
    assert robots_tag.opt_out(scoped) is None  # scoped to another crawler than ours
    assert robots_tag.opt_out(scoped, user_agent="img2dataset")
    refused = {"error_message": "Use of image disallowed by X-Robots-Tag directive"}
    assert "refused" in robots_tag.opt_out(refused)


def test_the_report_describes_the_data_set_as_given(tmp_path: Path) -> None:
    files = _small_set(tmp_path / "data", 3)
    report = tmp_path / "r.parquet"
    list(guard.scan([tmp_path / "data"], report=report, workers=0, watermark=False))
    files[0].unlink()  # gone since the last scan
    listing = tmp_path / "list.txt"
    listing.write_text(f"{files[1]}\n{files[2]}\n{tmp_path / 'never-there.jpg'}\n")
    new = list(guard.scan([listing], report=report, workers=0, watermark=False))
    assert [Path(r.path).name for r in new] == ["never-there.jpg"]  # the others were done
    assert new[0].decision == "unverifiable" and "cannot be read" in new[0].reasons[0]
    names = sorted(Path(r.path).name for r in report_mod.read(report))
    assert names == ["img01.jpg", "img02.jpg", "never-there.jpg"]


def test_a_json_beside_an_image_that_is_not_sample_metadata_is_ignored(tmp_path: Path) -> None:
    (path,) = _small_set(tmp_path, 1)
    path.with_suffix(".json").write_text('[{"bbox": [1, 2, 3, 4]}]')  # an annotation list
    (row,) = guard.scan([path], workers=0, watermark=False)
    assert row.decision == "allowed"
    path.with_suffix(".json").write_text("{not json")
    (row,) = guard.scan([path], workers=0, watermark=False)
    assert row.decision == "unverifiable" and "not valid JSON" in row.reasons[0]


def test_a_bad_argument_fails_before_anything_is_scanned(tmp_path: Path) -> None:
    """The data set is walked lazily; a missing or unreadable argument must still stop the scan
    before its first row, not after every argument in front of it was scanned."""
    _small_set(tmp_path / "data", 2)
    report = tmp_path / "r.parquet"
    bad_list = tmp_path / "list.parquet"
    bad_list.write_bytes(b"not parquet")
    for bad in (tmp_path / "missing", bad_list):
        rows = guard.scan([tmp_path / "data", bad], report=report, workers=0, watermark=False)
        with pytest.raises(guard.GuardError):
            next(rows)
        assert not report_mod.staging_dir(report).exists() or not any(
            report_mod.staging_dir(report).glob("part-*")
        )


def test_a_path_given_twice_is_scanned_once(tmp_path: Path) -> None:
    files = _small_set(tmp_path / "data", 2)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{files[0]}\n{files[0]}\n")
    rows = list(guard.scan([tmp_path / "data", listing], workers=0, watermark=False))
    assert sorted(r.path for r in rows) == sorted(str(p) for p in files)


def test_unit_sets_hold_hashes_not_strings() -> None:
    from guard.scan.unit_set import UnitSet

    ids = [f"/data/{i:07d}.jpg" for i in range(70_000)]  # more than one buffer: both halves
    units = UnitSet(ids[::2])
    assert len(units) == 35_000
    assert all(i in units for i in ids[:200:2]) and not any(i in units for i in ids[1:200:2])
    assert "/data/\udcff.jpg" not in units  # a name that is not UTF-8 (surrogate-escaped)
    units.add("/data/\udcff.jpg")
    assert "/data/\udcff.jpg" in units and 3 not in units
    each = units.contains_each(ids[:6])
    assert each.tolist() == [True, False, True, False, True, False]
    assert UnitSet().contains_each(["a"]).tolist() == [False]
    assert units._sorted.nbytes == 8 * len(units)  # 8 bytes per unit


def test_a_file_name_that_is_not_utf8_is_one_unverifiable_row(tmp_path: Path) -> None:
    """Parquet holds UTF-8 only: a file named with other bytes (legal on Linux) crashed the whole
    scan when its row was written. It is now one unverifiable row, its name escaped."""
    import tarfile

    files = _small_set(tmp_path / "data", 1)
    bad = os.fsencode(tmp_path / "data") + b"/caf\xe9.jpg"  # Latin-1 bytes
    os.rename(files[0], bad)
    corpus.picture(7, 96, 64).save(tmp_path / "data" / "fine.jpg", quality=85)
    shard = tmp_path / "data" / "s.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(tmp_path / "data" / "fine.jpg", arcname=os.fsdecode(b"0001\xff.jpg"))
        tar.add(tmp_path / "data" / "fine.jpg", arcname="0002.jpg")
    report = tmp_path / "r.parquet"
    rows = {r.path: r for r in guard.scan([tmp_path / "data"], report=report, workers=0)}
    name = str(tmp_path / "data" / "caf\\xe9.jpg")
    assert rows[name].decision == "unverifiable" and "not valid UTF-8" in rows[name].reasons[0]
    member = f"{shard}#0001\\xff.jpg"
    assert (
        rows[member].decision == "unverifiable" and rows[f"{shard}#0002.jpg"].decision == "allowed"
    )
    assert rows[str(tmp_path / "data" / "fine.jpg")].decision == "allowed"
    assert sorted(r.path for r in report_mod.read(report)) == sorted(rows)
    assert list(guard.scan([tmp_path / "data"], report=report, workers=0)) == []  # resumes
    assert os.path.exists(bad)  # never renamed or touched


def test_a_hostile_sample_json_cannot_stop_the_scan(tmp_path: Path) -> None:
    """A lone surrogate is valid JSON ("\\ud800") but not UTF-8: one such value in a sample's
    metadata stopped the whole scan when its row reached the Parquet report."""
    files = _small_set(tmp_path / "data", 2)
    files[0].with_suffix(".json").write_text('{"X-Robots-Tag": "noai, \\ud800"}')
    report = tmp_path / "r.parquet"
    rows = {Path(r.path).name: r for r in guard.scan([tmp_path / "data"], report=report, workers=0)}
    assert rows["img00.jpg"].decision == "opted_out"  # the readable directive still counts
    assert rows["img00.jpg"].x_robots_tag == "noai, \\ud800"  # the rest kept, escaped
    assert {Path(r.path).name: r.decision for r in report_mod.read(report)} == {
        "img00.jpg": "opted_out",
        "img01.jpg": "allowed",
    }


def test_a_pipe_or_device_named_like_an_image_is_not_read(tmp_path: Path) -> None:
    """A named pipe called x.jpg blocked the scan forever (open waits for a writer); a link to
    /dev/zero would have been read until memory ran out. Both are unverifiable, unread."""
    files = _small_set(tmp_path / "data", 1)
    os.mkfifo(tmp_path / "data" / "pipe.jpg")
    os.symlink("/dev/zero", tmp_path / "data" / "zero.jpg")
    os.mkfifo(tmp_path / "data" / "img00.json")  # the metadata beside a real image, too
    os.mkfifo(tmp_path / "data" / "shard.tar")
    for workers in (0, 1):
        scan = guard.scan([tmp_path / "data"], workers=workers, progress=True)  # counts shards
        rows = {Path(r.path).name: r for r in scan}
        for name in ("pipe.jpg", "zero.jpg", "shard.tar#"):
            assert rows[name].decision == "unverifiable"
            assert "not a regular file" in rows[name].reasons[0]
        assert rows[files[0].name].decision == "unverifiable"  # its .json could not be read


def test_a_shard_sample_too_big_to_hold_is_one_unverifiable_row(tmp_path: Path) -> None:
    """A sample is held until its last member; a hostile shard naming a million members alike
    (or a few huge ones) would have filled memory. Over the bound it becomes one row."""
    import io

    buf = io.BytesIO()
    corpus.picture(3, 96, 64).save(buf, "JPEG", quality=85)
    jpeg = buf.getvalue()
    members = [(f"many.{i:04d}.jpg", jpeg) for i in range(300)]  # one sample, 300 members
    members += [(f"big.{suffix}", jpeg) for suffix in ("jpg", "png", "webp")]  # > 2 x max_bytes
    shard = _tar(tmp_path / "hostile.tar", [*members, ("fine.jpg", jpeg)])
    rows = {
        r.path.split("#", 1)[1]: r
        for r in guard.scan([shard], workers=0, watermark=False, max_bytes=len(jpeg) + 100)
    }
    assert set(rows) == {"many.*", "big.*", "fine.jpg"}
    assert rows["many.*"].decision == rows["big.*"].decision == "unverifiable"
    assert "more than 256 members" in rows["many.*"].reasons[0]
    assert rows["fine.jpg"].decision == "allowed"


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def test_a_sample_split_across_a_shard_is_unverifiable_not_read_apart(tmp_path: Path) -> None:
    """WebDataset readers take each run of members as a sample: an image followed by another
    sample and then its own opt-out .json was read without the .json, and allowed."""
    import io

    buf = io.BytesIO()
    corpus.picture(4, 96, 64).save(buf, "JPEG", quality=85)
    noai = json.dumps({"X-Robots-Tag": "noai"}).encode()
    shard = _tar(
        tmp_path / "split.tar",
        [("a.jpg", buf.getvalue()), ("b.jpg", buf.getvalue()), ("a.json", noai)],
    )
    rows = {r.path.split("#", 1)[1]: r for r in guard.scan([shard], workers=0, watermark=False)}
    assert rows["a.jpg"].decision == "unverifiable" and "not together" in rows["a.jpg"].reasons[0]
    assert rows["b.jpg"].decision == "allowed"


def test_copy_clean_survives_a_compressed_shard_damaged_since_the_scan(tmp_path: Path) -> None:
    import gzip
    import io

    buf = io.BytesIO()
    corpus.picture(5, 96, 64).save(buf, "JPEG", quality=85)
    plain = _tar(tmp_path / "plain.tar", [("a.jpg", buf.getvalue()), ("b.jpg", buf.getvalue())])
    shard = tmp_path / "data" / "s.tar"  # gzip inside, as `tar czf` names it sometimes
    shard.parent.mkdir()
    shard.write_bytes(gzip.compress(plain.read_bytes()))
    report = tmp_path / "r.parquet"
    rows = list(guard.scan([shard], report=report, workers=0, watermark=False))
    assert [r.decision for r in rows] == ["allowed", "allowed"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damaged in the middle
    shard.write_bytes(bytes(data))
    result = export.copy_clean(report, tmp_path / "clean")  # a line, not an exception
    assert any("could not be read" in line for line in result.skipped)


def test_unit_hashes_are_keyed_per_process() -> None:
    """A public 64-bit hash would let someone who read the source name a file that collides
    with another (2^32 tries) and so drop it from a report; the key is drawn per process."""
    code = "from guard.scan.unit_set import unit_hash; print(unit_hash('/data/a.jpg'))"
    run = [sys.executable, "-c", code]
    first, second = (subprocess.run(run, capture_output=True, text=True, check=True) for _ in "ab")
    assert first.stdout.strip() != second.stdout.strip()
    from guard.scan.unit_set import unit_hash

    assert unit_hash("/data/a.jpg") == unit_hash("/data/a.jpg")  # stable within a process
