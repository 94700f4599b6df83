"""What every script shares: devices and precision, image files and grids, what a shift means,
the built-in synthetic faces and the shared command-line flags."""
