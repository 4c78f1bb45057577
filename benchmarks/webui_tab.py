"""The web UI extension's "guard" tab on a real gradio (web UI's pin, 3.41.2), driven in Chromium.

    python3 -m venv /tmp/gr
    .venv/bin/uv pip install --python /tmp/gr/bin/python gradio==3.41.2 fastapi==0.94.0 \\
        "pydantic<2" pillow==9.5.0
    printf '%s\\n' "$PWD/.venv/lib/python3.11/site-packages" "$PWD" \\
        > /tmp/gr/lib/python3.11/site-packages/zz_guard.pth
    /tmp/gr/bin/python benchmarks/webui_tab.py --shots docs/img

gradio is not in guard's lock (web UI brings its own), so this runs in a side environment with
web UI's pins of gradio, FastAPI, pydantic and Pillow in front of guard's locked packages. web UI
itself cannot be installed here: its `modules` are the suite's stand-ins
(tests/test_integrations_webui.py, web UI's documented signatures). What runs for real is gradio
and the extension's own script, loaded as web UI loads it: `on_ui_settings` registers guard's
settings with gradio components, `on_ui_tabs` builds the tab (`build_tab`), which is launched on
loopback, as web UI mounts it, and driven in Debian's chromium: a signed image dropped on Verify
must show its card (trusted, AI training not allowed), an unsigned one "no Content Credentials";
Protect on a tiny random-weight model (the plumbing, not how well it protects) must end with a
result line and the before / after pair. Exit 1 when one of those does not appear.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DIFFUSERS_OFFLINE="1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=Path, help="write the screenshots here (webui_tab_*.png)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="guard-webui-tab-"))
    os.environ["GUARD_HOME"] = str(work / "home")
    os.chdir(work)  # web UI's relative output folders (outputs/...) land here

    import gradio as gr
    import pytest
    import tiny_models
    from playwright.sync_api import expect as pw_expect
    from playwright.sync_api import sync_playwright

    import guard
    from tests.helpers import art
    from tests.test_integrations_webui import WebUI

    print(f"gradio {gr.__version__}", file=sys.stderr)
    signed, plain, artwork = work / "signed.png", work / "plain.png", work / "artwork.png"
    art(384, 320, seed=1).save(work / "src.png")
    guard.sign(work / "src.png", signed, author="a web UI user", training="notAllowed")
    art(384, 320, seed=2).save(plain)
    art(256, 256, seed=3).save(artwork)
    model = tiny_models.save_tiny_sd(work / "tiny-sd")

    webui = WebUI(pytest.MonkeyPatch())
    webui.load_extension()
    for callback in webui.callbacks["ui_settings"]:
        callback()
    print(f"settings registered: {sorted(webui.opts.data_labels)}", file=sys.stderr)
    ((blocks, title, elem_id),) = [t for cb in webui.callbacks["ui_tabs"] for t in cb()]
    assert (title, elem_id) == ("guard", "guard")
    port = free_port()
    blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    failures: list[str] = []

    def expect(page, text: str, what: str, timeout: float = 60_000) -> None:
        try:
            page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)
        except Exception:
            failures.append(f"{what}: {text!r} never appeared")

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator(".tab-nav button", has_text="Verify").wait_for()  # gradio 3's tab buttons
        expect(page, "Drop an image to verify it.", "the empty card")
        page.locator("input[type=file]").first.set_input_files(str(signed))
        expect(page, "AI training not allowed", "the signed file's card")
        expect(page, "The picture is the record's picture", "the signed file's ledger record")
        if args.shots:
            time.sleep(1)
            page.screenshot(path=str(args.shots / "webui_tab_verify.png"), full_page=True)
        page.get_by_label("Clear").first.click()  # gradio 3's File: the drop zone comes back
        expect(page, "Drop an image to verify it.", "the card after clearing")  # before the next
        page.locator("input[type=file]").first.set_input_files(str(plain))
        expect(page, "This file carries no Content Credentials", "the unsigned file's card")

        page.locator(".tab-nav button", has_text="Protect").click()
        page.locator("input[type=file]").last.set_input_files(str(artwork))
        page.get_by_label("Model to protect against").fill(str(model))
        page.get_by_text("low", exact=True).click()
        page.locator("button.primary", has_text="Protect").click()
        try:  # the result is a Textbox: its value, not its text
            pw_expect(page.get_by_label("Result")).to_have_value(
                re.compile(r"^Protected \(low, textural\): .*artwork\.protected\.png$"),
                timeout=240_000,
            )
        except AssertionError:
            failures.append("the protect result line never appeared")
        if args.shots:
            time.sleep(2)
            page.screenshot(path=str(args.shots / "webui_tab_protect.png"), full_page=True)
        browser.close()
    blocks.close()
    out = work / "outputs" / "guard-protected" / "artwork.protected.png"
    if not out.is_file():
        failures.append(f"{out} was not written")
    else:
        report = guard.verify(out).to_dict()
        print(f"protected file: c2pa {report['c2pa']['state']}, training {report['training']}")
        if report["c2pa"]["state"] != "trusted":
            failures.append("the protected file is not signed")
    for line in failures:
        print(f"FAILED: {line}", file=sys.stderr)
    print("ok" if not failures else f"{len(failures)} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
