"""Pictures: text to image (and image to image), instruction editing, inpaint/outpaint, the FLUX.1 tools."""
