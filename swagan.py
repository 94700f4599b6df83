"""SWAGAN: a style-based wavelet-driven generator (Gal, Hochberg, Bermano, Cohen-Or, 2021), as
rosinality/stylegan2-pytorch ships it, with this project's positional encodings.

The generator is StyleGAN2's (model.Generator: mapping, styled convolutions, noise, the input
and the PE of `position`), except that every ToRGB predicts the four Haar wavelet subbands of
the image (12 channels) at its feature resolution, the skip path upsamples them in the image
domain (inverse transform, upsample, forward transform), and one inverse Haar transform of the
last sum doubles it into the image. The features therefore stop at half the image size
(log_size = log2(size) - 1): a 256 px SWAGAN's last feature map is 128 x 128. With 'sspe' or
'mspe' the PE enters as in model.py, at every feature resolution; a shift of s output pixels is
s / (size / r) pixels of a feature map of resolution r, as in StyleGAN2.

The discriminator reads the Haar subbands of the image: at every resolution a FromRGB adds the
features of the (downsampled) subbands to those of a downsampling convolution block, then
StyleGAN2's minibatch stddev and final layers. State-dict names are rosinality's swagan.py
(with `position='none'`), so its checkpoints load strictly.
"""

import math

import torch
from torch import nn

from model import ConvLayer, DiscriminatorEpilogue, Downsample, ModulatedConv2d, Upsample, channel_counts, check_size
from model import Generator as StyleGAN2Generator
from op import upfirdn2d


def check_wavelet_size(size):
    """log2(size) of a SWAGAN image size: a power of two from 16 (features of 8) to 1024."""
    log_size = check_size(size)
    if log_size < 4:
        raise ValueError(f"a SWAGAN's size must be a power of two from 16 to 1024, not {size}")
    return log_size


def haar_filters():
    """The 2x2 Haar analysis filters (LL, LH, HL, HH): outer products of the low-pass (1, 1) / sqrt 2
    and the high-pass (-1, 1) / sqrt 2 filters."""
    low = torch.ones(1, 2) / math.sqrt(2)
    high = torch.tensor([[-1.0, 1.0]]) / math.sqrt(2)
    return low.T * low, high.T * low, low.T * high, high.T * high


class HaarTransform(nn.Module):
    """[N, C, 2H, 2W] image -> [N, 4C, H, W]: its LL, LH, HL, HH subbands (in this channel order)."""

    def __init__(self):
        super().__init__()
        for name, kernel in zip(("ll", "lh", "hl", "hh"), haar_filters()):
            self.register_buffer(name, kernel)

    def forward(self, input):
        return torch.cat([upfirdn2d(input, kernel, down=2) for kernel in (self.ll, self.lh, self.hl, self.hh)], 1)


class InverseHaarTransform(nn.Module):
    """[N, 4C, H, W] subbands -> [N, C, 2H, 2W]: the inverse of HaarTransform (exact)."""

    def __init__(self):
        super().__init__()
        ll, lh, hl, hh = haar_filters()
        # the synthesis filters are the analysis filters mirrored: the high-pass ones change sign
        for name, kernel in zip(("ll", "lh", "hl", "hh"), (ll, -lh, -hl, hh)):
            self.register_buffer(name, kernel)

    def forward(self, input):
        bands = input.chunk(4, 1)
        kernels = (self.ll, self.lh, self.hl, self.hh)
        return sum(upfirdn2d(band, kernel, up=2, pad=(1, 0, 1, 0)) for band, kernel in zip(bands, kernels))


class ToRGB(nn.Module):
    """The wavelet subbands of the image (3 x 4 channels) from the features of one resolution,
    plus the previous resolution's subbands upsampled as an image."""

    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=[1, 3, 3, 1], modconv="grouped"):
        super().__init__()
        if upsample:
            self.iwt = InverseHaarTransform()
            self.upsample = Upsample(blur_kernel)
            self.dwt = HaarTransform()
        self.conv = ModulatedConv2d(in_channel, 3 * 4, 1, style_dim, demodulate=False, modconv=modconv)
        self.bias = nn.Parameter(torch.zeros(1, 3 * 4, 1, 1))

    def forward(self, input, style, skip=None):
        out = self.conv(input, style) + self.bias
        if skip is not None:
            out = out + self.dwt(self.upsample(self.iwt(skip)))
        return out


class Generator(StyleGAN2Generator):
    """SWAGAN generator: model.Generator's arguments, forward and extras (position, shifts,
    canvas, scale, noise and latent helpers), with wavelet ToRGB layers and image."""

    output_factor = 2

    def __init__(
        self,
        size,
        style_dim,
        n_mlp,
        channel_multiplier=2,
        blur_kernel=[1, 3, 3, 1],
        lr_mlp=0.01,
        position="none",
        kernel_size=3,
        scale=1.0,
        *,
        affine=False,
        channel_max=512,
        modconv="grouped",
        device=None,
    ):
        check_wavelet_size(size)
        super().__init__(
            size,
            style_dim,
            n_mlp,
            channel_multiplier,
            blur_kernel,
            lr_mlp,
            position,
            kernel_size,
            scale,
            affine=affine,
            channel_max=channel_max,
            modconv=modconv,
        )
        self.iwt = InverseHaarTransform()
        if device is not None:
            self.to(device)

    def make_to_rgb(self, in_channel, style_dim, upsample, modconv):
        return ToRGB(in_channel, style_dim, upsample=upsample, modconv=modconv)

    def to_image(self, skip):
        return self.iwt(skip)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, the second downsampling by 2."""

    def __init__(self, in_channel, out_channel, blur_kernel=[1, 3, 3, 1]):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)

    def forward(self, input):
        return self.conv2(self.conv1(input))


class FromRGB(nn.Module):
    """Features of the image's subbands (first downsampled as an image, when `downsample`),
    added to the features `skip` of the previous block; returns (subbands, features)."""

    def __init__(self, out_channel, downsample=True, blur_kernel=[1, 3, 3, 1]):
        super().__init__()
        self.downsample = downsample
        if downsample:
            self.iwt = InverseHaarTransform()
            self.downsample = Downsample(blur_kernel)
            self.dwt = HaarTransform()
        self.conv = ConvLayer(3 * 4, out_channel, 3)

    def forward(self, input, skip=None):
        if self.downsample:
            input = self.dwt(self.downsample(self.iwt(input)))
        out = self.conv(input)
        if skip is not None:
            out = out + skip
        return input, out


class Discriminator(DiscriminatorEpilogue):
    """SWAGAN discriminator (rosinality's layout and names; `channel_max` caps the channels,
    `mbstd_group` is the minibatch-stddev group as in StyleGAN2's)."""

    def __init__(self, size, channel_multiplier=2, blur_kernel=[1, 3, 3, 1], *, channel_max=512, mbstd_group=4):
        super().__init__()
        log_size = check_wavelet_size(size) - 1
        channels = channel_counts(channel_multiplier, channel_max)
        self.dwt = HaarTransform()
        self.from_rgbs = nn.ModuleList()
        self.convs = nn.ModuleList()

        # rosinality's channel count for the first block: that of the image size, not of the
        # half-size subbands it reads (kept for its checkpoints)
        in_channel = channels[size]
        for i in range(log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            self.from_rgbs.append(FromRGB(in_channel, downsample=i != log_size, blur_kernel=blur_kernel))
            self.convs.append(ConvBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.from_rgbs.append(FromRGB(channels[4], blur_kernel=blur_kernel))
        self.build_epilogue(in_channel, channels[4], mbstd_group)

    def forward(self, input):
        input = self.dwt(input)
        out = None
        for from_rgb, conv in zip(self.from_rgbs, self.convs):
            input, out = from_rgb(input, out)
            out = conv(out)
        _, out = self.from_rgbs[-1](input, out)
        return self.epilogue(out)
