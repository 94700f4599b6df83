"""The Inception-v3 network of FID: 2048-d pool3 features of images.

Two weight files are accepted (INCEPTION_HELP says where they come from). pytorch-fid's port of
the TensorFlow FID Inception gives FIDs comparable with published ones; torchvision's ImageNet
inception_v3 gives FIDs comparable only among themselves. Given no file (the command lines of
rosinality's fid.py and calc_inception.py), the FID Inception is downloaded once into the torch
hub cache, as pytorch-fid does; without a network that is a clear error.
"""

import os

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import inception as tv_inception

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)

INCEPTION_HELP = (
    "FID needs the weights of an Inception-v3 network in a local file. Use either\n"
    "  - pt_inception-2015-12-05-6726825d.pth, the TensorFlow FID Inception ported by pytorch-fid "
    "(https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth), "
    "the network of the published FID numbers and of rosinality's fid.py, or\n"
    "  - a state dict of torchvision's inception_v3 (IMAGENET1K_V1): on a machine with network, "
    'python -c "import torch, torchvision; torch.save(torchvision.models.inception_v3('
    "weights='IMAGENET1K_V1').state_dict(), 'inception_v3_imagenet.pt')\" "
    "(FIDs from it are not comparable with published ones)."
)


def _tf_average_pool(input):
    # TensorFlow's average pool leaves the zero padding out of the average
    return F.avg_pool2d(input, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tv_inception.InceptionA):
    """InceptionA of the TensorFlow FID network: padding-free average pool in the pool branch."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(_tf_average_pool(x))
        return outputs


class FIDInceptionC(tv_inception.InceptionC):
    """InceptionC of the TensorFlow FID network: padding-free average pool in the pool branch."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(_tf_average_pool(x))
        return outputs


class FIDInceptionE1(tv_inception.InceptionE):
    """First InceptionE of the TensorFlow FID network: padding-free average pool."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(_tf_average_pool(x))
        return outputs


class FIDInceptionE2(tv_inception.InceptionE):
    """Second InceptionE of the TensorFlow FID network: a max pool in the pool branch."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))
        return outputs


def fid_inception_v3():
    """torchvision's Inception3 patched into the TensorFlow FID network (as pytorch-fid does)."""
    model = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    model.Mixed_5b = FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = FIDInceptionE1(1280)
    model.Mixed_7c = FIDInceptionE2(2048)
    return model


def download_fid_weights():
    """The state dict of pytorch-fid's FID Inception, downloaded once into the torch hub cache."""
    try:
        return torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, map_location="cpu", progress=True, weights_only=True)
    except (OSError, RuntimeError) as error:  # no network: URLError is an OSError
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise FileNotFoundError(
            f"could not download the FID Inception weights ({error}). Copy "
            f"pt_inception-2015-12-05-6726825d.pth into {folder}, or give a local file (metrics.py: "
            f"--inception PATH; fid.py and calc_inception.py: --inception_weights PATH). {INCEPTION_HELP}"
        ) from None


def load_inception(path=None, device="cpu"):
    """Inception-v3 returning the 2048-d pool3 features of [N, 3, H, W] images in [-1, 1].

    `path`: a state dict file of pytorch-fid's FID Inception (1008 classes, recognised by its
    fc layer) or of torchvision's inception_v3 (1000 classes); None downloads the FID Inception
    (download_fid_weights). Images are resized to 299x299 bilinearly and fed in [-1, 1], the
    input range of both weight sets.
    """
    if path is None:
        state, path = download_fid_weights(), FID_WEIGHTS_URL
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"Inception weights {path!r} not found. {INCEPTION_HELP}")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch's own message would suggest weights_only=False, which runs code
            raise ValueError(
                f"{path} cannot be read as a state dict: it is truncated (a partial download?), not a torch.save "
                f"file, or holds more than tensors ({type(error).__name__}). {INCEPTION_HELP}"
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise ValueError(f"{path} is not an Inception-v3 state dict (it has no 'fc.weight'). {INCEPTION_HELP}")
    classes = state["fc.weight"].shape[0]
    if classes == 1008:
        model = fid_inception_v3()
    else:
        aux_logits = any(key.startswith("AuxLogits.") for key in state)
        model = tv_inception.Inception3(num_classes=classes, aux_logits=aux_logits, init_weights=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{path} does not fit torchvision's inception_v3: {str(error).splitlines()[0]}. {INCEPTION_HELP}"
        ) from None
    model.fc = nn.Identity()
    return InceptionFeatures(model, os.path.basename(path)).eval().requires_grad_(False).to(device)


class InceptionFeatures(nn.Module):
    """Wraps an Inception3 whose fc is removed: [N, 3, H, W] in [-1, 1] -> [N, 2048] pool3.
    `weights` names the file its weights came from (stored beside real statistics)."""

    def __init__(self, inception, weights):
        super().__init__()
        self.inception = inception
        self.weights = weights

    def forward(self, images):
        images = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.inception(images)
