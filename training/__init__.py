"""What train.py imports: the GAN training step (gan.py), the loop around any step (loop.py),
adaptive discriminator augmentation (augment.py) and torchrun set-up (distributed.py)."""
