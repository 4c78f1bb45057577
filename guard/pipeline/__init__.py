"""The hook for a platform's own diffusers pipeline: `guard.attach(pipe)` marks every output
(hooks, watermarker), records its pending provenance (record), and `guard.save` publishes it
(save)."""
