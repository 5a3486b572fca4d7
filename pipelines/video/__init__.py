"""Video: text/image to video and its checked request, VACE inputs, long videos (context windows, diffusion forcing, sections), frame interpolation (RIFE is in networks/), export."""
