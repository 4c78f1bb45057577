"""Files and image containers: the one reader of untrusted files (safe_read), the one image
decoder (imageio), the one encoder (encoding) and atomic writer (atomic_write), the re-encode
that keeps other tools' metadata (carried, reencoding), and the raw PNG/JPEG/EXIF editors under
them (png_chunks, jpeg_segments, exif_block). Knows nothing of provenance."""
