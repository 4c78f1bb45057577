"""guard inside Stable Diffusion web UI (AUTOMATIC1111) and Forge: every saved image watermarked,
then signed in place; a "guard" settings section; a "guard" tab (Verify, Protect).

`guard integrations install webui PATH` copies the extension (the `extension` folder, package
data: web UI loads it, guard never imports it) into PATH/extensions/guard-webui. The extension
stays thin: each callback calls one function of this package, which holds the work and is
type-checked (the extension's files import web UI's own modules, which cannot be installed here).

| module      | web UI callback / UI                    | guard                                    |
|-------------|-----------------------------------------|------------------------------------------|
| saving      | on_before_image_saved                   | watermark_before_save: the mark, in place |
| saving      | on_image_saved                          | sign_saved_image: publish(in_place=True)  |
| settings    | on_ui_settings (shared.opts.add_option) | Settings.from_opts, option_infos          |
| tab         | on_ui_tabs: Verify, Protect             | verify_html (guard.server.cards), protect_image |
| environment | at load                                 | problems: guard's requirements unmet      |
"""

from __future__ import annotations

from guard.integrations.install import Target, register

# A web UI or Forge checkout holds these at its root (both have webui.py and launch.py; the
# callback module is what extensions import).
HOST_FILES = ("webui.py", "launch.py", "modules/script_callbacks.py")

register(
    Target(
        name="webui",
        package="guard.integrations.webui.extension",
        plugins="extensions",
        folder="guard-webui",
        host_files=HOST_FILES,
    )
)
