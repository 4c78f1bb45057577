"""guard for Stable Diffusion web UI and Forge: every image web UI saves is watermarked before it
is written and C2PA-signed in place right after; a "guard" section in Settings; a "guard" tab.

Thin on purpose: each callback calls one function of guard.integrations.webui (typed and
tested there). web UI's callback API (modules/script_callbacks.py), which Forge shares:
- on_before_image_saved(params: ImageSaveParams): runs inside images.save_image before the file
  is written; `params.image` is what gets written;
- on_image_saved(params): runs after the file is written (same params object);
- on_ui_settings(): add settings with shared.opts.add_option(key, shared.OptionInfo(...));
- on_ui_tabs(): return [(gradio Blocks, title, elem_id)].
"""

from __future__ import annotations

import importlib.util
import os
import sys

from modules import script_callbacks, shared

try:
    from guard.integrations.webui import environment, saving, tab
    from guard.integrations.webui.settings import Settings, option_infos
except Exception as exc:  # guard missing from web UI's environment: install.py said why
    print(
        f"guard: the extension is inactive: guard cannot be imported here ({exc}); see "
        "guard's install message above (set GUARD_PIP_REQUIREMENT to guard's source)",
        file=sys.stderr,
    )
    saving = None


def is_forge():
    """Forge's folder holds the modules_forge package beside web UI's modules."""
    try:
        return importlib.util.find_spec("modules_forge") is not None
    except (ImportError, ValueError):
        return False


HOST = "Stable Diffusion web UI Forge" if is_forge() else "Stable Diffusion web UI"


def settings():
    return Settings.from_opts(shared.opts)


def forge_restamp():
    """Forge writes its stealth infotext into the pixels just before the before-save callbacks
    (modules/images.py: stealth_infotext.add_stealth_pnginfo(params) when opts.enable_pnginfo);
    guard's mark goes in after it, so Forge's own function writes it again over the mark."""
    try:
        from modules import stealth_infotext
    except ImportError:  # AUTOMATIC1111's web UI has none
        return None

    def restamp(params):
        if shared.opts.enable_pnginfo:
            stealth_infotext.add_stealth_pnginfo(params)

    return restamp


RESTAMP = forge_restamp()


def report(params, outcome):
    """A failure goes to the console, to the generation's info below the gallery
    (p.comment, shown as the job's comments) and to a gradio warning toast."""
    if not outcome.failed:
        return
    print(outcome.message, file=sys.stderr)
    p = getattr(params, "p", None)
    if p is not None and callable(getattr(p, "comment", None)):
        p.comment(outcome.message)
    try:
        import gradio as gr

        gr.Warning(outcome.message)
    except Exception:
        pass


def on_before_image_saved(params):
    report(params, saving.watermark_before_save(params, settings(), restamp=RESTAMP))


def on_image_saved(params):
    report(params, saving.sign_saved_image(params, settings(), host=HOST))


def on_ui_settings():
    import gradio as gr

    components = {"checkbox": gr.Checkbox, "textbox": gr.Textbox, "radio": gr.Radio}
    for key, info in option_infos(shared.OptionInfo, components):
        shared.opts.add_option(key, info)


def protect_folder():
    """Protected artworks go beside web UI's other outputs: outputs/guard-protected."""
    if shared.opts.outdir_samples:
        return os.path.join(shared.opts.outdir_samples, "guard-protected")
    extras = shared.opts.outdir_extras_samples or os.path.join("outputs", "extras-images")
    return os.path.join(os.path.dirname(os.path.normpath(extras)) or "outputs", "guard-protected")


def build_tab():
    """The guard tab (gradio Blocks). Needs web UI's gradio: 3.41 in AUTOMATIC1111's web UI,
    4.x in Forge (which also ships gradio_imageslider for the before/after slider)."""
    import gradio as gr

    from guard.protection import MODES

    with gr.Blocks(analytics_enabled=False) as ui, gr.Tabs():
        with gr.Tab("Verify"):
            with gr.Row():
                with gr.Column():
                    upload = gr.File(label="Image to verify", file_types=["image"])
                    recent = gr.Textbox(label="Recent saves", value=saving.recent_text(), lines=6)
                    refresh = gr.Button("Refresh")
                card = gr.HTML(tab.verify_html(None, settings()))
            upload.change(
                lambda f: tab.verify_html(tab.upload_path(f), settings()), [upload], [card]
            )
            refresh.click(lambda: saving.recent_text(), [], [recent])
        with gr.Tab("Protect"):
            with gr.Row():
                with gr.Column():
                    art = gr.File(label="Artwork", file_types=["image"])
                    strength = gr.Radio(list(tab.STRENGTHS), value="medium", label="Preset")
                    mode = gr.Radio(list(MODES), value="textural", label="Mode")
                    model = gr.Textbox(
                        label="Model to protect against",
                        placeholder="empty: guard's default (Stable Diffusion 1.5's VAE); "
                        "a hub id, a diffusers folder or a .safetensors checkpoint",
                    )
                    go = gr.Button("Protect", variant="primary")
                with gr.Column():
                    status = gr.Textbox(label="Result", interactive=False)
                    try:
                        from gradio_imageslider import ImageSlider  # Forge

                        outputs = [status, ImageSlider(label="Before / after", type="pil")]
                    except ImportError:
                        with gr.Row():
                            before = gr.Image(label="Before", type="pil", interactive=False)
                            after = gr.Image(label="After", type="pil", interactive=False)
                        outputs = [status, before, after]

            def run(file, strength, mode, model, progress=gr.Progress()):  # noqa: B008
                path = tab.upload_path(file)
                if not path:
                    raise gr.Error("Drop an artwork first.")
                progress(0, desc="Protecting")
                try:
                    result = tab.protect_image(
                        path,
                        protect_folder(),
                        settings(),
                        strength=strength,
                        mode=mode,
                        model=model.strip() or None,
                        on_progress=lambda done, total: progress(
                            done / max(total, 1), desc=f"step {done}/{total}"
                        ),
                    )
                except Exception as exc:
                    raise gr.Error(f"guard could not protect it: {exc}") from exc
                if len(outputs) == 2:
                    return result.message, (result.before, result.after)
                return result.message, result.before, result.after

            go.click(run, [art, strength, mode, model], outputs)
    return ui


def on_ui_tabs():
    return [(build_tab(), "guard", "guard")]


if saving is not None:
    script_callbacks.on_ui_settings(on_ui_settings)
    script_callbacks.on_before_image_saved(on_before_image_saved)
    script_callbacks.on_image_saved(on_image_saved)
    script_callbacks.on_ui_tabs(on_ui_tabs)
    for line in environment.problems():
        print(f"guard: {line}", file=sys.stderr)
