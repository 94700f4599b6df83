"""prepare_data.py, dataset.py and utils/synthetic.py: LMDB round trips in the original format, error
cases a user meets, DataLoader workers, the circular-translation augmentation and the renderer."""

import os
import pickle
import subprocess
import sys
from io import BytesIO

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare
from torch.utils.data import DataLoader

import prepare_data
from dataset import MultiResolutionDataset, TrainTransform, circular_translate
from prepare_data import PrepareError, prepare
from utils.images import make_grid, resize_and_crop, to_tensor
from utils.synthetic import render_face

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "prepare_data.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def read_lmdb(path):
    """Every key and value of the LMDB at `path`, read with lmdb directly."""
    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        return dict(txn.cursor())


def decode(data):
    return np.asarray(Image.open(BytesIO(data)))


def save(img, path, **options):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, **options)


def make_truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buffer = BytesIO()
    Image.fromarray(noise).save(buffer, format="jpeg")
    with open(path, "wb") as file:
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def make_mixed_folder(root):
    """A nested folder of every image mode and format, a corrupt and a truncated image, and a
    text file. Returns the expected RGB colour of each good image, in sorted relative-path order."""
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255])
    images = [
        ("a_gray.png", Image.new("L", (40, 30), 100), {}, (100, 100, 100)),
        ("b_gray_alpha.png", Image.new("LA", (30, 40), (50, 0)), {}, (255, 255, 255)),
        ("c_rgba.png", Image.new("RGBA", (40, 40), (0, 0, 0, 128)), {}, (127, 127, 127)),
        ("d_palette.png", palette, {}, (0, 0, 255)),
        ("e_palette_transparent.png", palette, {"transparency": 1}, (255, 255, 255)),
        ("f_16bit.png", Image.new("I;16", (40, 40), 257 * 200), {}, (200, 200, 200)),
        ("g_cmyk.tif", Image.new("CMYK", (40, 40), (0, 255, 0, 0)), {}, (255, 0, 255)),
        ("h_rgb.webp", Image.new("RGB", (40, 40), (10, 20, 30)), {"lossless": True}, (10, 20, 30)),
        ("i_rgb.bmp", Image.new("RGB", (50, 40), (200, 100, 0)), {}, (200, 100, 0)),
        ("nested/deeper/j_rgb.tiff", Image.new("RGB", (40, 40), (0, 200, 100)), {}, (0, 200, 100)),
        ("nested/k_upper.JPG", Image.new("RGB", (40, 40), (60, 60, 180)), {"quality": 100}, (60, 60, 180)),
        ("nested/l_cmyk.jpg", Image.new("CMYK", (40, 40), (0, 0, 255, 0)), {"quality": 100}, (255, 255, 0)),
    ]
    for name, img, options, _ in images:
        save(img, os.path.join(root, name), **options)

    with open(os.path.join(root, "nested", "broken.png"), "wb") as file:
        file.write(b"this is not a png")
    make_truncated_jpeg(os.path.join(root, "cut.jpg"))
    with open(os.path.join(root, "notes.txt"), "w") as file:
        file.write("not an image")

    return [colour for _, _, _, colour in images]


def test_cli_writes_the_original_format_from_a_nested_folder(tmp_path):
    expected = make_mixed_folder(tmp_path / "images")
    out = tmp_path / "lmdb"

    # The README's command line, as written.
    result = run_cli("--out", out, "--n_worker", 2, "--size", "16,32", tmp_path / "images")

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert any("broken.png" in line for line in warnings) and any("cut.jpg" in line for line in warnings)
    assert f"Make dataset of image sizes: 16, 32 from {tmp_path / 'images'}" in result.stdout
    assert f"Wrote {len(expected)} images" in result.stdout
    assert "skipped 2 files" in result.stdout

    # Read as rosinality's dataset.py does.
    with lmdb.open(str(out), readonly=True, lock=False, readahead=False, meminit=False) as env:
        with env.begin(write=False) as txn:
            length = int(txn.get(b"length").decode("utf-8"))
            assert length == len(expected)
            for resolution in (16, 32):
                for index, colour in enumerate(expected):
                    img = Image.open(BytesIO(txn.get(f"{resolution}-{str(index).zfill(5)}".encode())))
                    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (resolution, resolution))
                    centre = np.asarray(img)[resolution // 2, resolution // 2].astype(int)
                    assert np.abs(centre - colour).max() <= 4, (index, centre, colour)

    keys = set(read_lmdb(out))
    image_keys = {f"{size}-{index:05d}".encode() for size in (16, 32) for index in range(length)}
    assert keys == image_keys | {b"length", b"sizes"}
    assert read_lmdb(out)[b"sizes"] == b"16,32"


def test_modes_become_the_colours_a_viewer_shows(tmp_path):
    expected = make_mixed_folder(tmp_path / "images")

    summary = prepare(str(tmp_path / "lmdb"), [8], str(tmp_path / "images"), image_format="png", verbose=False)

    data = read_lmdb(tmp_path / "lmdb")
    assert summary.length == len(expected) and len(summary.skipped) == 2
    for index, colour in enumerate(expected):
        pixels = decode(data[f"8-{index:05d}".encode()]).reshape(-1, 3).astype(int)
        assert np.abs(pixels - colour).max() <= 3, (index, pixels[0], colour)


def test_transparency_over_black_background(tmp_path):
    save(Image.new("LA", (20, 20), (50, 0)), str(tmp_path / "images" / "clear.png"))

    prepare(
        str(tmp_path / "lmdb"), [8], str(tmp_path / "images"), image_format="png", background="black", verbose=False
    )

    assert decode(read_lmdb(tmp_path / "lmdb")[b"8-00000"]).max() == 0


def test_order_is_sorted_relative_path_and_crop_is_centred(tmp_path):
    names = ["b/x.png", "a.png", "a/c/y.png", "c.png", ".hidden/z.png"]
    for value, name in enumerate(names):
        save(Image.new("L", (20, 20), 40 * value), str(tmp_path / "images" / name))
    # A wide image whose middle third is green: a centred square crop sees only green.
    wide = np.zeros((30, 90, 3), dtype=np.uint8)
    wide[:, :30, 0], wide[:, 30:60, 1], wide[:, 60:, 2] = 255, 255, 255
    save(Image.fromarray(wide), str(tmp_path / "images" / "d_wide.png"))

    prepare(str(tmp_path / "lmdb"), [16], str(tmp_path / "images"), image_format="png", verbose=False)

    data = read_lmdb(tmp_path / "lmdb")
    assert data[b"length"] == b"5"
    grays = [decode(data[f"16-{index:05d}".encode()])[8, 8, 0] for index in range(4)]
    assert grays == [40, 80, 0, 120]  # a.png, a/c/y.png, b/x.png, c.png; .hidden is left out
    crop = decode(data[b"16-00004"]).reshape(-1, 3).mean(0)
    assert crop[1] > 200 and crop[0] < 30 and crop[2] < 30


def test_photos_are_resized_and_cropped_pixel_for_pixel_as_rosinalitys_prepare_data():
    """torchvision's resize (long side int(size * long / short)) and center_crop (offsets
    int(round(excess / 2))), which rosinality's prepare_data.py runs, for shapes whose rounding
    differs from the obvious arithmetic."""
    from torchvision.transforms import functional

    rng = np.random.default_rng(0)
    for width, height, size in [(640, 427, 64), (301, 200, 128), (255, 171, 64), (171, 255, 64), (97, 64, 32)]:
        photo = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = functional.center_crop(functional.resize(photo, size, functional.InterpolationMode.LANCZOS), size)
        assert np.array_equal(np.array(resize_and_crop(photo, size)), np.array(expected)), (width, height, size)


def test_linked_folders_and_every_imagefolder_extension_are_found(tmp_path):
    save(Image.new("RGB", (20, 20)), str(tmp_path / "images" / "real" / "a.png"))
    save(Image.new("RGB", (20, 20)), str(tmp_path / "elsewhere" / "b.ppm"))
    save(Image.new("L", (20, 20)), str(tmp_path / "elsewhere" / "c.pgm"))
    os.symlink(tmp_path / "elsewhere", tmp_path / "images" / "linked")
    os.symlink(tmp_path / "images", tmp_path / "images" / "real" / "loop")  # back up the tree
    found, _ = prepare_data.find_images(str(tmp_path / "images"))
    assert [os.path.relpath(path, tmp_path / "images") for path in found] == [
        "linked/b.ppm",
        "linked/c.pgm",
        "real/a.png",
    ]


def test_skipped_files_leave_no_holes(tmp_path):
    for index in range(3):
        save(Image.new("RGB", (20, 20), (80 * index, 0, 0)), str(tmp_path / "images" / f"{index}_good.png"))
    make_truncated_jpeg(str(tmp_path / "images" / "0_cut.jpg"))
    with open(tmp_path / "images" / "1_bad.webp", "wb") as file:
        file.write(b"RIFF garbage")

    summary = prepare(str(tmp_path / "lmdb"), [8], str(tmp_path / "images"), image_format="png", verbose=False)

    data = read_lmdb(tmp_path / "lmdb")
    assert summary.length == 3
    assert sorted(os.path.basename(path) for path in summary.skipped) == ["0_cut.jpg", "1_bad.webp"]
    assert data[b"length"] == b"3"
    assert [decode(data[f"8-{index:05d}".encode()])[4, 4, 0] for index in range(3)] == [0, 80, 160]
    assert b"8-00003" not in data


def test_the_progress_bar_ends_at_every_image(tmp_path, capsys):
    prepare(str(tmp_path / "lmdb"), [8], n_synthetic=30, image_format="png", verbose=True)

    bar = capsys.readouterr().err.split("\r")[-1]
    assert "30/30" in bar, bar


def test_map_grows_and_batches_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_data, "INITIAL_MAP_SIZE", 64 * 1024)

    prepare(str(tmp_path / "lmdb"), [128], n_synthetic=40, image_format="png", commit_every=7, verbose=False)

    data = read_lmdb(tmp_path / "lmdb")
    assert sum(len(value) for value in data.values()) > 2 * prepare_data.INITIAL_MAP_SIZE
    assert data[b"length"] == b"40"
    assert decode(data[b"128-00039"]).shape == (128, 128, 3)


def test_synthetic_lmdb_is_the_same_for_any_worker_count(tmp_path):
    prepare(str(tmp_path / "one"), [16, 32], n_synthetic=12, seed=5, n_worker=1, verbose=False)
    result = run_cli("--synthetic", 12, "--seed", 5, "--n_worker", 2, "--size", "32,16", "--out", tmp_path / "two")

    assert result.returncode == 0, result.stderr
    assert read_lmdb(tmp_path / "one") == read_lmdb(tmp_path / "two")


def test_cli_errors_exit_non_zero_and_write_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    save(Image.new("RGB", (20, 20)), str(tmp_path / "small" / "tiny.png"))

    empty = run_cli("--out", tmp_path / "out", "--size", 16, tmp_path / "empty")
    missing = run_cli("--out", tmp_path / "out", "--size", 16, tmp_path / "nowhere")
    too_small = run_cli("--out", tmp_path / "out", "--size", "16,32", "--no_upscale", tmp_path / "small")
    bad_size = run_cli("--out", tmp_path / "out", "--size", "16,big", tmp_path / "small")
    untrainable_size = run_cli("--out", tmp_path / "out", "--size", "16,30", tmp_path / "small")
    no_input = run_cli("--out", tmp_path / "out", "--size", 16)

    assert empty.returncode == 1 and "found no images" in empty.stderr
    assert missing.returncode == 1 and "nowhere" in missing.stderr
    assert missing.stdout == ""  # the error is the only thing said, with no banner before it
    assert too_small.returncode == 1 and "tiny.png is 20x20" in too_small.stderr and "--no_upscale" in too_small.stderr
    assert bad_size.returncode == 2 and "--size" in bad_size.stderr
    assert untrainable_size.returncode == 2 and "power of two from 8 to 1024, not 30" in untrainable_size.stderr
    assert no_input.returncode == 2 and "DATASET_PATH" in no_input.stderr
    assert sorted(os.listdir(tmp_path)) == ["empty", "small"]


def test_existing_output_is_refused_without_overwrite(tmp_path):
    save(Image.new("RGB", (20, 20)), str(tmp_path / "small" / "tiny.png"))
    out = tmp_path / "lmdb"
    prepare(str(out), [8], n_synthetic=3, verbose=False)

    refused = run_cli("--out", out, "--size", 8, tmp_path / "small")
    failed = run_cli("--out", out, "--size", 32, "--no_upscale", "--overwrite", tmp_path / "small")

    assert refused.returncode == 1 and "--overwrite" in refused.stderr
    assert failed.returncode == 1
    assert read_lmdb(out)[b"length"] == b"3"  # a failed run keeps the old dataset whole

    replaced = run_cli("--out", out, "--size", 8, "--overwrite", tmp_path / "small")

    assert replaced.returncode == 0, replaced.stderr
    assert read_lmdb(out)[b"length"] == b"1"
    assert sorted(os.listdir(tmp_path)) == ["lmdb", "small"]


def test_output_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.txt").write_text("mine")

    with pytest.raises(PrepareError, match="other files"):
        prepare(str(tmp_path / "photos"), [8], n_synthetic=2, overwrite=True, verbose=False)

    assert os.listdir(tmp_path / "photos") == ["keep.txt"]


def test_dataset_reads_images_of_the_requested_size(synthetic_lmdb):
    dataset = MultiResolutionDataset(synthetic_lmdb, TrainTransform(flip=False), resolution=32)
    plain = MultiResolutionDataset(synthetic_lmdb, None, resolution=64)

    assert len(dataset) == 64 and dataset.sizes == [32, 64]
    item = dataset[63]
    assert item.shape == (3, 32, 32) and item.dtype == torch.float32
    assert item.min() >= -1 and item.max() <= 1 and item.std() > 0.1
    assert plain[0].size == (64, 64) and plain[0].mode == "RGB"
    with pytest.raises(IndexError):
        dataset[64]


def test_dataset_errors_name_the_problem(synthetic_lmdb, tmp_path):
    with pytest.raises(ValueError, match="holds sizes 32, 64; --size 128 is not among them"):
        MultiResolutionDataset(synthetic_lmdb, None, resolution=128)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MultiResolutionDataset(str(tmp_path / "nowhere"), None)

    with lmdb.open(str(tmp_path / "unfinished")) as env, env.begin(write=True) as txn:
        txn.put(b"32-00000", b"")
    with pytest.raises(ValueError, match="no 'length' key"):
        MultiResolutionDataset(str(tmp_path / "unfinished"), None, resolution=32)


def test_dataset_reads_lmdbs_of_the_original_tool(tmp_path):
    # The original tool writes no "sizes" key; the dataset finds the sizes by probing.
    with lmdb.open(str(tmp_path / "legacy")) as env, env.begin(write=True) as txn:
        for size in (16, 32):
            for index in range(2):
                buffer = BytesIO()
                Image.new("RGB", (size, size), (index * 100, 0, 0)).save(buffer, format="jpeg")
                txn.put(f"{size}-{str(index).zfill(5)}".encode(), buffer.getvalue())
        txn.put(b"length", b"2")

    dataset = MultiResolutionDataset(str(tmp_path / "legacy"), None, resolution=32)

    assert dataset.sizes == [16, 32] and len(dataset) == 2
    assert np.asarray(dataset[1])[0, 0, 0] > 90
    with pytest.raises(ValueError, match="holds sizes 16, 32; --size 64"):
        MultiResolutionDataset(str(tmp_path / "legacy"), None, resolution=64)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_every_image(synthetic_lmdb, context):
    dataset = MultiResolutionDataset(synthetic_lmdb, TrainTransform(flip=False), resolution=32)
    expected = torch.stack([dataset[index] for index in range(len(dataset))])  # opens the LMDB here first

    loader = DataLoader(dataset, batch_size=16, num_workers=2, multiprocessing_context=context)

    assert torch.equal(torch.cat(list(loader)), expected)
    assert pickle.loads(pickle.dumps(dataset)).env is None


def test_augmented_loading_is_reproducible_and_only_moves_pixels(synthetic_lmdb):
    dataset = MultiResolutionDataset(synthetic_lmdb, TrainTransform(translate=0.25), resolution=32)
    plain = torch.stack([TrainTransform(flip=False)(img) for img in MultiResolutionDataset(synthetic_lmdb, None, 32)])

    def load(seed):
        torch.manual_seed(seed)
        return torch.cat(list(DataLoader(dataset, batch_size=16, num_workers=2, multiprocessing_context="fork")))

    first, again, other = load(0), load(0), load(1)

    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, plain)
    assert torch.equal(first.flatten(1).sort(1).values, plain.flatten(1).sort(1).values)


def rolled_offsets(rolled):
    """The (dy, dx) by which a batch [N, 1, H, W] of images that held a 1 at (0, 0) was rolled."""
    height, width = rolled.shape[-2:]
    position = rolled.flatten(1).argmax(1)
    dy, dx = position // width, position % width

    return torch.where(dy > height // 2, dy - height, dy), torch.where(dx > width // 2, dx - width, dx)


def test_circular_translate_is_a_roll():
    img = torch.arange(3 * 8 * 10, dtype=torch.float32).reshape(3, 8, 10)
    batch = img.expand(32, 3, 8, 10)
    generator = torch.Generator().manual_seed(0)

    single = circular_translate(img, 3, 2, generator=generator)
    rolled = circular_translate(batch, 3, 2, generator=generator)

    for out in [single, *rolled]:
        dy, dx = [int(offset) for offset in torch.nonzero(out[0] == 0)[0]]
        assert torch.equal(out, torch.roll(img, (dy, dx), dims=(-2, -1)))
        assert torch.equal(out.flatten().sort().values, img.flatten())
        assert min(dy, 8 - dy) <= 3 and min(dx, 10 - dx) <= 2
    assert len({tuple(torch.nonzero(out[0] == 0)[0].tolist()) for out in rolled}) > 5  # per-sample offsets
    assert circular_translate(img, 0, 0) is img


def test_circular_translate_offsets_are_uniform():
    marker = torch.zeros(8000, 1, 9, 9)
    marker[:, 0, 0, 0] = 1
    generator = torch.Generator().manual_seed(0)

    dy, dx = rolled_offsets(circular_translate(marker, 2, 2, generator=generator))
    counts = torch.bincount((dy + 2) * 5 + (dx + 2), minlength=25)
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    assert counts.sum() == 8000 and chisquare(counts.numpy()).pvalue > 0.001

    # A range as large as the image: every one of the 81 rolls equally likely.
    dy, dx = rolled_offsets(circular_translate(marker, 9, 9, generator=generator))
    counts = torch.bincount((dy % 9) * 9 + dx % 9, minlength=81)
    assert len(counts) == 81 and chisquare(counts.numpy()).pvalue > 0.001


def test_train_transform_uses_the_global_rng():
    img = render_face(0, 32)
    plain = TrainTransform()(img)

    torch.manual_seed(3)
    first = [TrainTransform(translate=1.0)(img) for _ in range(20)]
    torch.manual_seed(3)
    again = [TrainTransform(translate=1.0)(img) for _ in range(20)]

    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(out.flatten()[:64].tolist()) for out in first}) > 10
    assert plain.min() >= -1 and plain.max() <= 1 and plain.shape == (3, 32, 32)
    flips = [torch.equal(TrainTransform(flip=True)(img), plain.flip(-1)) for _ in range(40)]
    assert 5 < sum(flips) < 35
    with pytest.raises(ValueError, match="translate"):
        TrainTransform(translate=1.5)


def test_images_load_augment_and_tile_bit_for_bit_as_torchvision_did():
    """to_tensor, the flip and make_grid are this project's own, so that scripts start without
    importing torchvision: they must keep the pixels, the random stream and rosinality's grids."""
    from torchvision import transforms, utils

    img = render_face(1, 16)
    torchvision_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    assert torch.equal(to_tensor(img), torchvision_tensor(img))
    for seed in range(6):
        torch.manual_seed(seed)
        ours, after_ours = TrainTransform(translate=1.0)(img), torch.rand(1)
        torch.manual_seed(seed)
        flipped = transforms.RandomHorizontalFlip()(img)
        theirs, after_theirs = circular_translate(torchvision_tensor(flipped), 16, 16), torch.rand(1)
        assert torch.equal(ours, theirs) and torch.equal(after_ours, after_theirs)

    batch = torch.rand(5, 3, 4, 6) * 2 - 1
    for nrow, columns in ((None, 2), (2, 2), (3, 3), (8, 8)):
        assert torch.equal(make_grid(batch, nrow), utils.make_grid(batch, nrow=columns, padding=2, pad_value=-1))
    assert torch.equal(make_grid(batch[:1]), batch[0])


def test_the_commands_start_without_importing_torchvision():
    """Its import takes seconds of every start: only the Inception and LPIPS networks need it,
    and they import it when they are built."""
    scripts = "train, generate, projector, prepare_data, metrics, evidence, convert_weight, demo, ppl"
    scripts += ", closed_form_factorization, apply_factor"
    check = f"import sys\nimport {scripts}\nprint('torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_synthetic_faces_are_deterministic_and_varied():
    faces = [np.asarray(render_face(index, 64), dtype=int) for index in range(16)]

    assert np.array_equal(np.asarray(render_face(7, 64)), faces[7])
    assert not np.array_equal(np.asarray(render_face(7, 64, seed=1)), faces[7])
    assert min(np.abs(a - b).mean() for i, a in enumerate(faces) for b in faces[i + 1 :]) > 5
    assert render_face(0, 16).size == (16, 16) and render_face(0, 1024).mode == "RGB"


def test_synthetic_faces_are_aligned():
    # Every face has its left pupil on the same pixel (dark), while backgrounds vary.
    faces = np.stack([np.asarray(render_face(index, 256), dtype=int) for index in range(20)])
    pupil = faces[:, round(0.46 * 256), round(0.405 * 256)].mean(1)
    corner = faces[:, 4, 4]

    assert pupil.max() < 60
    assert corner.std(0).mean() > 30
