"""Images in and out: files to RGB, PIL to tensors in [-1, 1] and back, grids, GIFs, videos and PSNR.

Every tensor image in this project is float, [C, H, W] or [N, C, H, W], with pixel values in
[-1, 1] (-1 black, 1 white), as the generator renders them.
"""

import math
import os

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

# ---------------------------------------------------------------------------------------------
# files and PIL images


def to_rgb(image, background=(255, 255, 255)):
    """Convert a PIL image of any mode to RGB.

    Transparent pixels are composited over `background`; 16-bit grayscale is scaled to 8 bits.
    """
    if image.mode == "I" or image.mode.startswith("I;16"):
        # convert("L") would clip these values at 255 instead of scaling them.
        values = np.asarray(image).astype(np.float64) / 257
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")

    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, background + (255,)), image)

    return image.convert("RGB")


def load_rgb(path, background=(255, 255, 255)):
    """Decode the image file at `path` as RGB, upright as its EXIF orientation says."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image), background)


def resize_and_crop(image, size, resample=Image.LANCZOS):
    """Resize the short side of a PIL image to `size`, then crop the centre `size` x `size` square.

    As torchvision's resize and center_crop, which rosinality's prepare_data.py runs, pixel for
    pixel: the long side becomes int(size * long / short), truncated, and the crop starts at
    int(round(excess / 2)), Python's rounding of halves to even."""
    width, height = image.size
    new_long = int(size * max(width, height) / min(width, height))
    new_width, new_height = (size, new_long) if width <= height else (new_long, size)
    image = image.resize((new_width, new_height), resample)
    left, top = int(round((new_width - size) / 2.0)), int(round((new_height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


# ---------------------------------------------------------------------------------------------
# tensors


def to_tensor(image):
    """An RGB PIL image as a float tensor [3, H, W] in [-1, 1]: (pixel / 255 - 0.5) / 0.5, the
    arithmetic of torchvision's to_tensor and normalize, so that images load bit for bit as the
    original code's."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return pixels.float().div(255).sub_(0.5).div_(0.5)


def to_pil(image):
    """A [3, H, W] tensor in [-1, 1] as a PIL image (values outside are clipped)."""
    array = image.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def psnr(mse, peak=2.0):
    """PSNR in dB of a mean squared error (a float or a tensor of them), 10 log10(peak^2 / mse).

    Images in [-1, 1] have peak 2. A zero error gives inf.
    """
    if torch.is_tensor(mse):
        return 10 * torch.log10(peak**2 / mse)
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


# ---------------------------------------------------------------------------------------------
# grids and animations


def make_grid(images, nrow=None):
    """A [N, 3, H, W] batch in [-1, 1] as one [3, H', W'] grid, still in [-1, 1]: `nrow` images a
    row (default: the square root of N, rounded down), 2 black pixels between and around them, as
    torchvision's make_grid draws rosinality's sample grids; one image comes back as it is."""
    padding = 2
    images = images.detach().float().cpu()
    if len(images) == 1:
        return images[0]
    count, channels, height, width = images.shape
    columns = min(nrow or max(1, int(count**0.5)), count)
    rows = math.ceil(count / columns)
    cell_h, cell_w = height + padding, width + padding
    grid = images.new_full((channels, rows * cell_h + padding, columns * cell_w + padding), -1.0)
    for index, image in enumerate(images):
        top, left = padding + (index // columns) * cell_h, padding + (index % columns) * cell_w
        grid[:, top : top + height, left : left + width] = image
    return grid


def save_grid(images, path, nrow=None):
    """Save a batch in [-1, 1] as a PNG grid (as rosinality's sample grids)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    to_pil(make_grid(images, nrow)).save(path)


def save_gif(frames, path, duration=40):
    """Save frames (PIL images or [3, H, W] tensors in [-1, 1]) as a looping GIF."""
    frames = [frame if isinstance(frame, Image.Image) else to_pil(frame) for frame in frames]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=False)


def save_grid_gif(frames, path, duration=40):
    """Save frames of batches ([N, 3, H, W] each, in [-1, 1]) as a looping GIF of their grids."""
    save_gif([make_grid(images) for images in frames], path, duration)


def save_video(frames, stem, duration=40):
    """Save frames ([3, H, W] tensors in [-1, 1]) as the H.264 video `stem`.mp4 at 1000 / `duration`
    frames per second when the optional package imageio-ffmpeg (which brings its own ffmpeg) is
    installed, else as the looping GIF `stem`.gif. Returns the path written."""
    try:
        import imageio_ffmpeg
    except ImportError:
        save_gif(frames, f"{stem}.gif", duration)
        return f"{stem}.gif"
    path = f"{stem}.mp4"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pictures = [np.ascontiguousarray(np.asarray(to_pil(frame))) for frame in frames]
    height, width = pictures[0].shape[:2]
    # ffmpeg rescales frames whose sides are not multiples of 16 (H.264's macroblock)
    writer = imageio_ffmpeg.write_frames(path, (width, height), fps=1000 / duration, ffmpeg_log_level="error")
    writer.send(None)
    for picture in pictures:
        writer.send(picture)
    writer.close()
    return path


def labelled_rows(rows, labels, margin=110):
    """PIL images stacked top to bottom, each with its label written in a white left margin."""
    sheet = Image.new("RGB", (margin + max(row.width for row in rows), sum(row.height for row in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for row, label in zip(rows, labels):
        sheet.paste(row, (margin, top))
        draw.text((4, top + row.height // 2 - 6), label, fill="black")
        top += row.height
    return sheet
