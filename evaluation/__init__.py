"""The metrics, one module each (equivariance, swd, fid with its Inception network, ppl with
LPIPS in perceptual), what they share (common.py) and the spatial-bias report (spatial_bias.py).
metrics.py, fid.py and ppl.py are their command lines."""
