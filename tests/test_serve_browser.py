"""`guard serve` in a real browser: Debian's headless Chromium driven by Playwright.

Skipped only when no Chromium is installed (CI installs it in .ci/run). Set GUARD_SCREENSHOTS
to a folder (docs/img) to save a screenshot of each view there, as docs/serve.md shows them.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
import tiny_models as tm
from helpers import art
from serve_support import live_server, signed_picture

from guard.server import ServeSettings, create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = os.environ.get("GUARD_SCREENSHOTS")
expect.set_options(timeout=90_000)  # a protect job on a shared 2-core CPU takes a while


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Path:
    return tm.sd_folder(tmp_path_factory)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(90_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def drop(page: Page, zone: str, files: list[tuple[str, bytes, str]]) -> None:
    """A real drop event on the page's drop zone, carrying files as a DataTransfer."""
    payload = [{"name": n, "b64": base64.b64encode(d).decode(), "type": t} for n, d, t in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(f".drop[data-target={zone}]", "drop", {"dataTransfer": transfer})


def card_for(page: Page, name: str):
    return page.locator("[data-testid=verdict]").filter(has=page.locator("h2", has_text=name))


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"serve_{name}.png"), full_page=True)


def loaded(img) -> bool:
    return img.evaluate("(i) => i.complete && i.naturalWidth > 0")


def test_verify_signed_tampered_and_stripped(page, tmp_path, ledger_path):
    signed = signed_picture(tmp_path, ledger_path)
    data = bytearray(signed.path.read_bytes())
    data[data.find(b"IDAT") + 200] ^= 0x01  # one flipped byte: the manifest no longer matches
    with live_server(create_app(ServeSettings(ledger=ledger_path))) as url:
        page.goto(url)
        drop(
            page,
            "verify",
            [
                ("signed.png", signed.path.read_bytes(), "image/png"),
                ("tampered.png", bytes(data), "image/png"),
                ("stripped.jpg", signed.stripped, "image/jpeg"),
            ],
        )
        expect(page.locator("[data-testid=verdict]")).to_have_count(3)
        good = card_for(page, "signed.png")
        expect(good.locator("[data-testid=state]")).to_have_text("trusted")
        expect(good.locator("[data-testid=training]")).to_have_text("AI training not allowed")
        expect(good.locator("[data-testid=timeline] img")).to_have_count(1)

        bad = card_for(page, "tampered.png")
        expect(bad.locator("[data-testid=state]")).to_have_text("invalid")
        expect(bad.locator("[data-testid=reason]")).to_contain_text("changed after signing")

        stripped = card_for(page, "stripped.jpg")
        expect(stripped.locator("[data-testid=state]")).to_have_text("absent")
        match = stripped.locator("[data-testid=ledger-match]")
        expect(match).to_be_visible()
        expect(match.locator("[data-testid=ledger-words]")).to_contain_text("Matches a record")
        for thumb in ("uploaded-thumb", "record-thumb"):
            img = match.locator(f"[data-testid={thumb}]")
            expect(img).to_be_visible()
            assert loaded(img), thumb
        assert not page.errors, page.errors  # nothing refused by the CSP, no script error
        shot(page, "verify")


def test_protect_then_download_and_a_closed_tab_loses_nothing(page, tmp_path, ledger_path, sd):
    import guard
    from guard.protection import ASSERTION_LABEL

    src = tmp_path / "artwork.png"
    art(320, 256, seed=4).save(src)
    settings = ServeSettings(ledger=ledger_path, model=str(sd))
    with live_server(create_app(settings)) as url:
        page.goto(url)
        page.get_by_role("tab", name="Protect").click()
        page.select_option("#protect-strength", "low")
        drop(page, "protect", [("artwork.png", src.read_bytes(), "image/png")])
        job = page.locator("[data-testid=job]")
        expect(job.locator("[data-testid=download]")).to_be_visible()
        expect(job.locator("[data-testid=compare] input[type=range]")).to_be_visible()
        job.locator("[data-testid=compare] input[type=range]").fill("30")
        shot(page, "protect")
        with page.expect_download() as info:
            job.locator("[data-testid=download]").click()
        out = tmp_path / "downloaded.png"
        info.value.save_as(out)
        assert info.value.suggested_filename == "artwork.protected.png"
        v = guard.verify(out)
        assert v.state == "trusted" and v.training == "notAllowed"
        assert v.c2pa.assertions[ASSERTION_LABEL]["eps_255"] == 4.0
        assert v.to_dict()["watermark"]["found"]  # protected, then watermarked and signed

        # a tab closed and opened again finds the finished job, with its result
        context = page.context
        page.close()
        again = context.new_page()
        again.goto(url)
        again.get_by_role("tab", name="Protect").click()
        expect(again.locator("[data-testid=job] [data-testid=download]")).to_be_visible()
        expect(again.locator("[data-testid=job] .job-name")).to_have_text("artwork.png")


def test_sign_with_the_servers_identity(page, tmp_path, ledger_path):
    import guard

    src = tmp_path / "photo.png"
    art(320, 256, seed=5).save(src)
    with live_server(create_app(ServeSettings(ledger=ledger_path))) as url:
        page.goto(url)
        page.get_by_role("tab", name="Sign").click()
        expect(page.locator("[data-testid=identity-subject]")).to_contain_text("CN=")
        page.select_option("#sign-training", "allowed")
        page.select_option("#sign-source", "photo")
        page.fill("#sign-author", "Ada")
        drop(page, "sign", [("photo.png", src.read_bytes(), "image/png")])
        link = page.locator("[data-testid=job] [data-testid=download]")
        expect(link).to_be_visible()
        shot(page, "sign")
        with page.expect_download() as info:
            link.click()
        out = tmp_path / info.value.suggested_filename
        info.value.save_as(out)
        assert out.name == "photo.signed.png"
        v = guard.verify(out)
        assert v.state == "trusted" and v.training == "allowed" and v.c2pa.author == "Ada"
        assert v.watermark and v.to_dict()["watermark"]["found"]
        assert not page.errors, page.errors


def test_read_only_page_offers_verify_only(page, ledger_path):
    from guard.ledger import Ledger

    Ledger(ledger_path).close()  # a read-only server opens an existing ledger, never makes one
    with live_server(create_app(ServeSettings(ledger=ledger_path, read_only=True))) as url:
        page.goto(url)
        expect(page.get_by_role("tab", name="Verify")).to_be_visible()
        expect(page.get_by_role("tab", name="Protect")).to_be_hidden()
        expect(page.get_by_role("tab", name="Sign")).to_be_hidden()
        expect(page.locator("#mode-note")).to_contain_text("read-only")


def test_a_missing_or_wrong_token_points_to_the_token_box(page, tmp_path, ledger_path):
    """The two 401s read differently, and each one marks the page's Token box."""
    token = "s3cret-token-0123456789"
    src = tmp_path / "photo.png"
    art(320, 256, seed=5).save(src)
    photo = [("photo.png", src.read_bytes(), "image/png")]
    box = page.locator("#token")
    banner = page.locator("#error")
    with live_server(create_app(ServeSettings(ledger=ledger_path, token=token))) as url:
        page.goto(url)
        page.get_by_role("tab", name="Sign").click()
        drop(page, "sign", photo)
        expect(banner).to_contain_text("needs its token")
        expect(banner).to_contain_text("Token box")
        expect(box).to_have_attribute("aria-invalid", "true")
        expect(box).to_be_focused()

        box.fill("wrong-token-0123456789")
        box.dispatch_event("change")
        expect(box).not_to_have_attribute("aria-invalid", "true")
        drop(page, "sign", photo)
        expect(banner).to_contain_text("not this server's token")
        expect(banner).to_contain_text("Token box")
        expect(box).to_have_attribute("aria-invalid", "true")

        box.fill(token)
        box.dispatch_event("change")
        drop(page, "sign", photo)
        expect(page.locator("[data-testid=job] [data-testid=download]")).to_be_visible()
        expect(banner).to_be_hidden()


def test_a_collage_shows_where_the_records_picture_is(page, tmp_path, ledger_path):
    """The record's picture pasted into another one: the card names the region, in words and
    as a box drawn over the upload, and applies none of the record's claims."""
    import io

    from PIL import Image

    signed = signed_picture(tmp_path, ledger_path, size=(512, 512))
    marked = Image.open(signed.path).convert("RGB")
    canvas = art(700, 700, seed=9)
    canvas.paste(marked, (120, 90))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    with live_server(create_app(ServeSettings(ledger=ledger_path))) as url:
        page.goto(url)
        drop(page, "verify", [("collage.jpg", buf.getvalue(), "image/jpeg")])
        card = card_for(page, "collage.jpg")
        words = card.locator("[data-testid=ledger-words]")
        expect(words).to_contain_text("only part of this one")
        expect(words).to_contain_text("not for this picture")
        box = card.locator("[data-testid=region-box]")
        expect(box).to_be_visible()
        img = card.locator("[data-testid=uploaded-thumb]")
        ib, bb = img.bounding_box(), box.bounding_box()
        assert ib and bb
        # the box covers the pasted square: 512/700 of the upload's width, from 120/700 across
        assert abs(bb["width"] / ib["width"] - 512 / 700) < 0.05
        assert abs((bb["x"] - ib["x"]) / ib["width"] - 120 / 700) < 0.05
        expect(card.locator("[data-testid=training]")).not_to_have_text("AI training not allowed")
        assert not page.errors, page.errors
        shot(page, "verify-collage")
