"""Procedural, aligned synthetic faces: the dataset that ships with the project.

Every face is drawn at the same position and scale, as FFHQ's alignment does (eyes always at the
same height, face centred), so a generator trained on them learns a strong spatial bias: exactly
what spatially unbiased training is meant to remove. Shapes, colours and features vary per image.

Image `index` depends only on (seed, index), never on how many images are rendered or by which
worker, so datasets made from the same seed agree image for image.
"""

import argparse
import math
import os

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4

# Fixed landmarks in units of the image side (x, y): the alignment every face shares.
EYE_Y = 0.46
EYE_DX = 0.095
MOUTH_Y = 0.70
FACE_CX, FACE_CY = 0.5, 0.55

SKIN_LIGHT = np.array([255, 224, 196])
SKIN_DARK = np.array([96, 60, 40])
HAIR_COLOURS = np.array(
    [
        [20, 16, 14],  # black
        [70, 42, 24],  # dark brown
        [130, 84, 46],  # brown
        [214, 176, 110],  # blond
        [160, 60, 30],  # red
        [170, 170, 170],  # grey
    ]
)
IRIS_COLOURS = np.array(
    [
        [90, 56, 30],  # brown
        [60, 110, 170],  # blue
        [80, 130, 80],  # green
        [120, 130, 140],  # grey
        [40, 28, 20],  # dark
    ]
)


def _colour(rgb):
    return tuple(int(c) for c in np.clip(np.round(rgb), 0, 255))


def _jitter(rng, rgb, amount):
    return rgb + rng.uniform(-amount, amount, size=3)


def _random_background(rng, canvas):
    """A vertical gradient between two random colours."""
    top, bottom = rng.uniform(30, 235, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, 64)[:, None, None]
    column = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)

    return Image.fromarray(column).resize((canvas, canvas), Image.BILINEAR)


def render_face(index, size, seed=0):
    """Render synthetic face `index` of dataset `seed` as a `size` x `size` RGB PIL image.

    Drawn at 4x supersampling and downsampled with LANCZOS, so any size from 16 to 1024 is
    anti-aliased. Deterministic: the same (index, size, seed) always gives the same pixels.
    """
    rng = np.random.default_rng([seed, index])
    canvas = size * SUPERSAMPLE

    def box(cx, cy, rx, ry):
        return [(cx - rx) * canvas, (cy - ry) * canvas, (cx + rx) * canvas, (cy + ry) * canvas]

    def width(fraction):
        return max(1, round(fraction * canvas))

    skin = SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * rng.uniform() ** 1.5
    skin = _jitter(rng, skin, 12)
    skin_shade = skin * 0.82
    hair = _jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 18)
    iris = _jitter(rng, IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], 15)
    lips = _jitter(rng, skin * np.array([0.95, 0.55, 0.55]) + np.array([40, 0, 0]), 15)
    clothes = rng.uniform(20, 235, size=3)

    face_rx = rng.uniform(0.17, 0.23)
    face_ry = rng.uniform(0.24, 0.30)
    hair_style = rng.choice(["short", "long", "bald"], p=[0.45, 0.45, 0.10])

    image = _random_background(rng, canvas)
    draw = ImageDraw.Draw(image)

    # Back to front: long hair, shoulders and neck, hair, ears, face, fringe, features.
    if hair_style == "long":
        hair_length = rng.uniform(0.78, 1.0)
        draw.rounded_rectangle(
            [
                (FACE_CX - face_rx - 0.06) * canvas,
                (FACE_CY - 0.1) * canvas,
                (FACE_CX + face_rx + 0.06) * canvas,
                hair_length * canvas,
            ],
            radius=0.06 * canvas,
            fill=_colour(hair),
        )
    draw.ellipse(box(0.5, 1.08, rng.uniform(0.36, 0.46), 0.2), fill=_colour(clothes))
    draw.rectangle(box(0.5, 0.85, face_rx * 0.45, 0.1), fill=_colour(skin_shade))

    if hair_style != "bald":
        draw.ellipse(box(FACE_CX, FACE_CY - 0.035, face_rx + 0.025, face_ry + 0.03), fill=_colour(hair))
    for side in (-1, 1):
        draw.ellipse(box(0.5 + side * face_rx * 0.98, EYE_Y + 0.05, 0.03, 0.05), fill=_colour(skin_shade))
    face_box = box(FACE_CX, FACE_CY, face_rx, face_ry)
    draw.ellipse(face_box, fill=_colour(skin))
    if hair_style != "bald":
        # The fringe is the top chord of the face ellipse, ending above the eyebrows. Drawn as a
        # polygon (Pillow's chord() mis-fills fractional angles) on a slightly larger ellipse, so
        # that no sliver of skin shows between the polygon's straight edges and the face outline.
        fringe_y = rng.uniform(0.31, 0.37)
        angle = math.asin(min(1.0, (FACE_CY - fringe_y) / face_ry))
        arc = np.linspace(math.pi + angle, 2 * math.pi - angle, 48)
        draw.polygon(
            [
                (
                    (FACE_CX + (face_rx + 0.01) * math.cos(t)) * canvas,
                    (FACE_CY + (face_ry + 0.01) * math.sin(t)) * canvas,
                )
                for t in arc
            ],
            fill=_colour(hair),
        )

    brow_lift = rng.uniform(0.035, 0.05)
    brow_width = width(rng.uniform(0.008, 0.016))
    eye_rx = rng.uniform(0.038, 0.05)
    eye_ry = rng.uniform(0.016, 0.026)
    iris_r = min(eye_ry * 1.1, rng.uniform(0.016, 0.02))
    for side in (-1, 1):
        eye_x = 0.5 + side * EYE_DX
        draw.arc(
            box(eye_x, EYE_Y - brow_lift + 0.02, eye_rx * 1.2, 0.025),
            200,
            340,
            fill=_colour(hair * 0.7),
            width=brow_width,
        )
        draw.ellipse(
            box(eye_x, EYE_Y, eye_rx, eye_ry), fill=(245, 245, 240), outline=_colour(skin * 0.45), width=width(0.004)
        )
        draw.ellipse(box(eye_x, EYE_Y, iris_r, iris_r), fill=_colour(iris))
        draw.ellipse(box(eye_x, EYE_Y, iris_r * 0.45, iris_r * 0.45), fill=(10, 10, 10))
        draw.ellipse(
            box(eye_x + iris_r * 0.35, EYE_Y - iris_r * 0.35, iris_r * 0.18, iris_r * 0.18), fill=(255, 255, 255)
        )

    nose_rx = rng.uniform(0.018, 0.03)
    nose_y = rng.uniform(0.58, 0.61)
    draw.polygon(
        [
            (0.5 * canvas, (EYE_Y + 0.03) * canvas),
            ((0.5 + nose_rx) * canvas, nose_y * canvas),
            ((0.5 - nose_rx) * canvas, nose_y * canvas),
        ],
        fill=_colour(skin * 0.9),
    )
    for side in (-1, 1):
        draw.ellipse(box(0.5 + side * nose_rx * 0.55, nose_y, 0.007, 0.005), fill=_colour(skin * 0.5))

    mouth_rx = rng.uniform(0.05, 0.09)
    smile = rng.uniform(0.0, 1.0)
    if smile > 0.5:
        # An open smile: the lower half of an ellipse, teeth inside.
        mouth_ry = 0.012 + 0.04 * (smile - 0.5)
        draw.chord(box(0.5, MOUTH_Y, mouth_rx, mouth_ry), 0, 180, fill=_colour(lips * 0.6))
        draw.chord(box(0.5, MOUTH_Y, mouth_rx * 0.85, mouth_ry * 0.45), 0, 180, fill=(240, 240, 235))
        draw.arc(box(0.5, MOUTH_Y, mouth_rx, mouth_ry), 0, 180, fill=_colour(lips), width=width(0.008))
        draw.line(
            [((0.5 - mouth_rx) * canvas, MOUTH_Y * canvas), ((0.5 + mouth_rx) * canvas, MOUTH_Y * canvas)],
            fill=_colour(lips),
            width=width(0.006),
        )
    else:
        curve = 0.004 + 0.03 * smile
        draw.arc(box(0.5, MOUTH_Y - curve, mouth_rx, curve + 0.004), 10, 170, fill=_colour(lips), width=width(0.012))

    if rng.uniform() < 0.2:
        frame = _colour(rng.uniform(0, 120, size=3))
        lens_r = eye_rx + 0.018
        for side in (-1, 1):
            draw.ellipse(box(0.5 + side * EYE_DX, EYE_Y, lens_r, lens_r * 0.8), outline=frame, width=width(0.006))
        draw.line(
            [((0.5 - EYE_DX + lens_r) * canvas, EYE_Y * canvas), ((0.5 + EYE_DX - lens_r) * canvas, EYE_Y * canvas)],
            fill=frame,
            width=width(0.006),
        )

    return image.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Save synthetic faces as PNG files, to look at them.")
    parser.add_argument("--n", type=int, default=16, help="number of faces")
    parser.add_argument("--size", type=int, default=256, help="side of each image in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--out", type=str, default="sample/synthetic", help="output folder")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    for index in range(args.n):
        render_face(index, args.size, args.seed).save(os.path.join(args.out, f"{index:05d}.png"))
    print(f"Saved {args.n} faces of {args.size}px to {args.out}")
