"""convert_weight.py and utils/nvidia_pickle.py: NVIDIA's pickles imported without running them.

tests/data/nvidia_networks.pt was made once, outside the repository, by running NVlabs/stylegan3's
own training/networks_stylegan2.py and networks_stylegan3.py on the CPU (their reference ops) on
tiny random networks, 32 px, latent 16, 2 mapping layers: StyleGAN2 (skip G, resnet D, channel
max 8; random w_avg, biases and noise strengths) and StyleGAN3-T (channel max 8) and -R (NVIDIA's
channel max 16), each with a non-identity learned input transform (affine weights N(0, 0.5), bias
(0.8, 0.6, 0.15, -0.1)) and input magnitudes set by one pass and then off by random factors. Per
network it holds the state dict (names, shapes, one flat float32 tensor), the module tree (class
names, constructor kwargs, parameter and buffer names), the images rendered for its 2 latents z
(StyleGAN2 with noise_mode='const'), one image at truncation 0.5, and for StyleGAN2 the
discriminator's scores of the images and their mirror images. No NVIDIA code is in the repository:
the tests write pickles in NVIDIA's format themselves (NvidiaPickler). The other files in
tests/data named nvidia_* were made the same way; the tests that read them say how.
"""

import collections
import copyreg
import os
import pickle
import re

import numpy as np
import pytest
import torch

import closed_form_factorization
import convert_weight
import generate
import metrics
import train
from checkpoint import build_discriminator, load_checkpoint, load_generator
from utils.nvidia_pickle import NvidiaPickleError, load_network_pickle

DATA = os.path.join(os.path.dirname(__file__), "data", "nvidia_networks.pt")
PLACEHOLDER_SOURCE = "# the source text of NVIDIA's module would be here; it must never run\nraise SystemExit\n"


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA, weights_only=True)


class Global:
    """A global named by module and name, written as a GLOBAL opcode (nothing imported)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce asks for a callable; it is never called
        raise AssertionError(f"{self.module}.{self.name} is a stand-in")


class EasyDictStandIn(dict):
    """Pickles as dnnlib.util.EasyDict does: NEWOBJ of the class, then its items (NvidiaPickler)."""


class PersistentStandIn:
    """Pickles as an instance of a persistence.persistent_class does."""

    def __init__(self, class_name, state):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = {"type": "class", "version": 6, "module_src": PLACEHOLDER_SOURCE, "class_name": self.class_name}
        meta["state"] = self.state
        return Global("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,)


class Call:
    """Pickles as a call of the global `function` with `args` (what a malicious file does)."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class NvidiaPickler(pickle._Pickler):
    """The pure-Python pickler, writing Global stand-ins as GLOBAL opcodes."""

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        elif isinstance(obj, EasyDictStandIn):
            self.save_reduce(copyreg.__newobj__, (Global("dnnlib.util", "EasyDict"),), dictitems=iter(obj.items()))
        else:
            super().save(obj, save_persistent_id)


def write_pickle(path, content):
    with open(path, "wb") as file:
        NvidiaPickler(file, protocol=3).dump(content)  # the protocol of Python 3.7, NVIDIA's


def easydicts(value):
    return EasyDictStandIn({k: easydicts(v) for k, v in value.items()}) if isinstance(value, dict) else value


def network(stored):
    """A PersistentStandIn tree of a stored network: NVIDIA's module __dict__s, with Parameters."""
    tensors = dict(zip(stored["names"], stored["values"].split([torch.Size(s).numel() for s in stored["shapes"]])))
    tensors = {name: tensor.reshape(shape) for (name, tensor), shape in zip(tensors.items(), stored["shapes"])}
    records = {}
    for path, node in stored["tree"].items():  # parents before children
        prefix = path + "." if path else ""
        state = {
            "training": False,
            "_parameters": collections.OrderedDict(
                (n, torch.nn.Parameter(tensors[prefix + n])) for n in node["parameters"]
            ),
            "_buffers": collections.OrderedDict((n, tensors[prefix + n]) for n in node["buffers"]),
            "_non_persistent_buffers_set": set(node["non_persistent"]),
            "_modules": collections.OrderedDict(),
            "_init_args": (),
            "_init_kwargs": {key: easydicts(value) for key, value in (node["init_kwargs"] or {}).items()},
        }
        records[path] = PersistentStandIn(node["class_name"], state)
        if path:
            parent, _, name = path.rpartition(".")
            records[parent].state["_modules"][name] = records[path]
    synthesis = records.get("synthesis")
    if synthesis is not None and "input" in synthesis.state["_modules"]:
        synthesis.state["layer_names"] = [name for name in synthesis.state["_modules"] if name != "input"]
        # attributes NVIDIA's modules keep as numpy arrays and scalars
        synthesis.state["_modules"]["input"].state.update(
            size=np.broadcast_to(np.asarray(36), [2]), bandwidth=np.float64(2)
        )
    return records[""]


def converted(tmp_path, reference, family, keys=("G_ema",)):
    """Write `family`'s networks as an NVIDIA pickle, convert it, return the checkpoint's path."""
    stored = reference[family]
    content = {key: network(stored["D" if key == "D" else "G"]) for key in keys}
    content["training_set_kwargs"] = EasyDictStandIn(resolution=32, use_labels=False)
    source, out = tmp_path / f"{family}.pkl", tmp_path / f"{family}.pt"
    write_pickle(source, content)
    convert_weight.main([str(source), "--out", str(out)])
    return out


def test_stylegan2_renders_nvidias_images_and_scores(tmp_path, reference, capsys):
    out = converted(tmp_path, reference, "stylegan2", keys=("G", "D", "G_ema"))
    printed = capsys.readouterr().out
    assert "stylegan2" in printed and "32 px" in printed and "2 mapping layers" in printed and "G, D, G_ema" in printed
    checkpoint = load_checkpoint(str(out))
    assert {"g", "d", "g_ema", "w_avg", "args"} <= set(checkpoint) and checkpoint["args"].position == "none"
    generator, config = load_generator(str(out))
    stored, z = reference["stylegan2"], reference["z"]
    with torch.no_grad():
        images = generator([z], randomize_noise=False)[0]  # the stored noise: NVIDIA's noise_mode='const'
        truncated = generator(
            [z[:1]], randomize_noise=False, truncation=0.5, truncation_latent=generator.truncation_latent(0.5)
        )[0]
        discriminator = build_discriminator(config)
        discriminator.load_state_dict(checkpoint["d"])
        scores = discriminator.eval()(torch.cat([stored["images"], stored["images"].flip(3)]))
    assert (images - stored["images"]).abs().max() <= 1e-4
    assert (truncated - stored["truncated"]).abs().max() <= 1e-4  # w_avg is the truncation centre
    assert (scores - stored["scores"]).abs().max() <= 1e-4


def test_a_discriminator_that_cannot_be_built_is_left_out_not_the_generators(tmp_path, reference, capsys):
    """A D with two minibatch-stddev channels has no counterpart here: the generators convert."""
    content = {key: network(reference["stylegan2"]["D" if key == "D" else "G"]) for key in ("G", "D", "G_ema")}
    content["D"].state["_init_kwargs"]["epilogue_kwargs"] = {"mbstd_group_size": 4, "mbstd_num_channels": 2}
    write_pickle(tmp_path / "two.pkl", content)
    convert_weight.main([str(tmp_path / "two.pkl"), "--out", str(tmp_path / "two.pt")])
    assert "left out D: a minibatch stddev of 2 channels (ours has 1)" in capsys.readouterr().out
    checkpoint = load_checkpoint(str(tmp_path / "two.pt"))
    assert {"g", "g_ema", "w_avg", "args"} <= set(checkpoint) and "d" not in checkpoint


def test_a_discriminator_grouping_the_stddev_by_8_scores_as_nvidias(tmp_path, reference, capsys):
    """NVIDIA's StyleGAN2 FFHQ-U 256 and paper256 configs take --mbstd-group 8. The converted D
    keeps the group (--mbstd_group) and gives NVIDIA's scores on a batch of 8:
    tests/data/nvidia_mbstd8.pt holds the images and the scores NVlabs/stylegan3's own
    Discriminator gave them, with this test data's StyleGAN2 D weights, at groups of 8 and of 4."""
    stored = torch.load(os.path.join(os.path.dirname(DATA), "nvidia_mbstd8.pt"), weights_only=True)
    content = {key: network(reference["stylegan2"]["D" if key == "D" else "G"]) for key in ("G_ema", "D")}
    content["D"].state["_init_kwargs"]["epilogue_kwargs"] = {"mbstd_group_size": 8}
    write_pickle(tmp_path / "grouped.pkl", content)
    convert_weight.main([str(tmp_path / "grouped.pkl"), "--out", str(tmp_path / "grouped.pt")])
    assert "D's minibatch-stddev group 8" in capsys.readouterr().out
    checkpoint = load_checkpoint(str(tmp_path / "grouped.pt"))
    _, config = load_generator(str(tmp_path / "grouped.pt"))
    assert config.mbstd_group == 8
    discriminator = build_discriminator(config)
    discriminator.load_state_dict(checkpoint["d"])
    with torch.no_grad():
        scores = discriminator.eval()(stored["images"])
    assert (stored["scores_group8"] - stored["scores_group4"]).abs().max() > 0.05  # the group matters
    assert (scores - stored["scores_group8"]).abs().max() <= 1e-4


@pytest.mark.parametrize("arch", ["stylegan3-t", "stylegan3-r"])
def test_stylegan3_renders_nvidias_images(tmp_path, reference, arch, capsys):
    out = converted(tmp_path, reference, arch)
    assert arch in capsys.readouterr().out
    generator, config = load_generator(str(out))
    assert config.arch == arch and config.channel_max == 8
    stored, z = reference[arch], reference["z"]
    with torch.no_grad():
        images = generator([z])[0]
        truncated = generator([z[:1]], truncation=0.5)[0]
    assert stored["images"].abs().max() > 0.3  # a transform and magnitudes that matter
    assert (images - stored["images"]).abs().max() <= 1e-4
    assert (truncated - stored["truncated"]).abs().max() <= 1e-4


def with_random_parameters(layout, seed):
    """A stored layout (names, shapes, NVIDIA's buffers) with random parameters, as network() takes it."""
    generator = torch.Generator().manual_seed(seed)
    values = [
        layout["buffers"][name] if name in layout["buffers"] else torch.randn(shape, generator=generator) * 0.2
        for name, shape in zip(layout["names"], layout["shapes"])
    ]
    return dict(layout, values=torch.cat([value.flatten() for value in values]))


@pytest.mark.parametrize("arch", ["stylegan3-t", "stylegan3-r"])
def test_nvidias_ffhqu_256_configs_with_cbase_16384_convert_generator_and_discriminator(tmp_path, arch, capsys):
    """NVIDIA's FFHQ-U 256 px StyleGAN3 models are trained with --cbase 16384 (their configs.md).
    tests/data/nvidia_ffhqu256_layouts.pt was made once, outside the repository, by building
    NVlabs/stylegan3's Generator (256 px, latent 16, 2 mapping layers, --cbase 16384 and --cmax
    128, doubled for -R as their train.py does) and their resnet Discriminator (--cbase 16384,
    --cmax 128): module trees, parameter names and shapes, and their buffers (filters, Fourier
    features); the parameters here are random. --cmax 128 keeps it small and still lets the base
    decide the last layers' channels (T: 91 and 64 where --cbase 32768 gives 128)."""
    layouts = torch.load(os.path.join(os.path.dirname(DATA), "nvidia_ffhqu256_layouts.pt"), weights_only=True)
    content = {"G_ema": network(with_random_parameters(layouts[arch]["G"], 0))}
    content["D"] = network(with_random_parameters(layouts["D"], 1))
    write_pickle(tmp_path / "ffhqu.pkl", content)
    convert_weight.main([str(tmp_path / "ffhqu.pkl"), "--out", str(tmp_path / "ffhqu.pt")])
    assert "left out D" not in capsys.readouterr().out
    checkpoint = load_checkpoint(str(tmp_path / "ffhqu.pt"))
    assert (checkpoint["args"].channel_multiplier, checkpoint["args"].channel_max) == (1, 128)
    generator, config = load_generator(str(tmp_path / "ffhqu.pt"))
    channels = [layer.weight.shape[0] for layer in generator.layers]
    assert channels[11:] == ([91, 64, 64, 3] if arch == "stylegan3-t" else [181, 128, 128, 3])
    discriminator = build_discriminator(config)
    discriminator.load_state_dict(checkpoint["d"])


def test_a_channel_base_off_the_multipliers_is_refused(tmp_path, reference):
    g = network(reference["stylegan3-t"]["G"])
    g.state["_init_kwargs"]["channel_base"] = 24576
    write_pickle(tmp_path / "other.pkl", {"G_ema": g})
    with pytest.raises(SystemExit, match="channel_base 24576 .a multiple of 16384"):
        convert_weight.main([str(tmp_path / "other.pkl")])


@pytest.mark.parametrize(
    "module, buffer, message",
    [("input", "transform", "non-identity user transform"), ("L3_36_8", "down_filter", "L3_36_8.down_filter differs")],
)
def test_a_user_transform_or_other_filters_are_refused(tmp_path, reference, module, buffer, message):
    g = network(reference["stylegan3-t"]["G"])
    buffers = g.state["_modules"]["synthesis"].state["_modules"][module].state["_buffers"]
    buffers[buffer] = buffers[buffer] * 2
    write_pickle(tmp_path / "other.pkl", {"G_ema": g})
    with pytest.raises(SystemExit, match=message):
        convert_weight.main([str(tmp_path / "other.pkl")])
    assert not (tmp_path / "other.pt").exists()


def test_the_scripts_load_a_converted_checkpoint(tmp_path, reference, monkeypatch):
    out = converted(tmp_path, reference, "stylegan2", keys=("G", "D", "G_ema"))
    monkeypatch.chdir(tmp_path)
    generate.main(["--name", "sg2", "--ckpt", str(out), "--mode", "grid", "--n_sample", "2", "--truncation", "0.7"])
    metrics.main(["eqt", "--name", "sg2", "--ckpt", str(out), "--n", "4"])
    closed_form_factorization.main([str(out), "--out", str(tmp_path / "factor.pt")])
    assert (tmp_path / "generate" / "sg2" / "grid" / "grid.png").exists()
    assert (tmp_path / "metrics" / "sg2" / "eqt.json").exists() and (tmp_path / "factor.pt").exists()


def test_conditional_networks_and_other_architectures_are_refused(tmp_path, reference):
    for change, message in [({"c_dim": 10}, "conditional"), ({"architecture": "resnet"}, "architecture 'resnet'")]:
        g = network(reference["stylegan2"]["G"])
        g.state["_init_kwargs"].update(change)
        write_pickle(tmp_path / "other.pkl", {"G": g})
        with pytest.raises(SystemExit, match=message):
            convert_weight.main([str(tmp_path / "other.pkl")])


@pytest.mark.parametrize(
    "function",
    [Global("os", "system"), Global("posix", "system"), Global("builtins", "exec"), Global("builtins", "eval")],
)
def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path, reference, function):
    marker = tmp_path / "marker"
    command = f"open({str(marker)!r}, 'w')" if function.module == "builtins" else f"touch {marker}"
    path = tmp_path / "evil.pkl"
    write_pickle(path, {"G_ema": network(reference["stylegan3-t"]["G"]), "payload": Call(function, command)})
    with pytest.raises(NvidiaPickleError, match=f"{function.module}.{function.name}") as refusal:
        load_network_pickle(path)
    assert "Nothing from the file was executed" in str(refusal.value)
    assert not marker.exists()
    if function.name == "exec":  # the payload is real: Python's own unpickler runs it
        write_pickle(tmp_path / "payload.pkl", Call(function, command))
        pickle.loads((tmp_path / "payload.pkl").read_bytes())
        assert marker.exists()


class Reduced:
    """Pickles as `function(*arguments)`."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def forged_object_pointers():
    """numpy bytes read as object pointers: a dtype of two object fields whose state says it holds
    no objects (a numpy scalar of it, unpickled by numpy, dereferences 0x41414140)."""
    crafted = np.dtype([("a", "O"), ("b", "O")])
    constructor, arguments, state = crafted.__reduce__()
    crafted = np.dtype(*arguments)
    crafted.__setstate__((*state[:-1], 0))
    return np.frombuffer(b"\x40\x41\x41\x41\x00\x00\x00\x00" * 2, dtype=crafted)[0]


@pytest.mark.parametrize(
    "payload, message",
    [
        (lambda: forged_object_pointers(), "a numpy dtype"),
        (
            lambda: Reduced(torch._utils._rebuild_tensor_v2, torch.zeros(4).storage(), 0, (10**6,), (1,), False, {}),
            "past its storage",
        ),
        (
            lambda: Reduced(torch._utils._rebuild_tensor_v2, torch.zeros(4).storage(), 0, (4,), (-1,), False, {}),
            "stride (-1,)",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # the storages NVIDIA's files hold
def test_crafted_numpy_values_and_tensors_past_their_storage_are_refused(tmp_path, payload, message):
    path = tmp_path / "crafted.pkl"
    path.write_bytes(pickle.dumps({"G": collections.OrderedDict(value=payload())}, protocol=4))
    with pytest.raises(NvidiaPickleError, match=re.escape(message)):
        load_network_pickle(path)


def test_a_pickle_cannot_set_state_on_what_the_reader_allows(tmp_path):
    """BUILD on an allowed class or function would change every later load: refused."""
    path = tmp_path / "mutating.pkl"
    data = pickle.dumps(collections.OrderedDict, protocol=4)[:-1]  # the class, then BUILD {"poison": 1}
    path.write_bytes(data + pickle.dumps({"poison": 1}, protocol=4)[2:-1] + pickle.BUILD + pickle.STOP)
    with pytest.raises(NvidiaPickleError, match="BUILD on a type"):
        load_network_pickle(path)
    assert not hasattr(collections.OrderedDict, "poison")


def test_a_truncated_file_and_other_files_get_clear_errors(tmp_path, reference):
    path = tmp_path / "network.pkl"
    write_pickle(path, {"G_ema": network(reference["stylegan3-t"]["G"])})
    data = path.read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match="truncated"):
        convert_weight.main([str(tmp_path / "cut.pkl")])
    torch.save({"g_ema": {}}, tmp_path / "ours.pt")
    with pytest.raises(SystemExit, match="torch.save checkpoint"):
        convert_weight.main([str(tmp_path / "ours.pt"), "--out", str(tmp_path / "x.pt")])
    write_pickle(tmp_path / "dict.pkl", {"weights": [1, 2]})
    with pytest.raises(SystemExit, match="no G, D or G_ema"):
        convert_weight.main([str(tmp_path / "dict.pkl")])
    with pytest.raises(SystemExit, match="missing.pkl is not a file"):
        convert_weight.main([str(tmp_path / "missing.pkl")])
    # bytes that are no pickle: pickle's reader raises KeyError on an unknown memo or opcode
    (tmp_path / "noise.pkl").write_bytes(bytes([0x80, 0x04, 0x68, 0x20]) + bytes(range(256)) * 4)
    with pytest.raises(SystemExit, match="noise.pkl cannot be read as an NVIDIA network pickle: .* not a pickle"):
        convert_weight.main([str(tmp_path / "noise.pkl"), "--out", str(tmp_path / "x.pt")])
    # an --out that is the pickle itself would replace it
    with pytest.raises(SystemExit, match="is the pickle itself"):
        convert_weight.main([str(path), "--out", str(path)])
    assert path.read_bytes() == data


# ---------------------------------------------------------------------------------------------
# fine-tuning a converted checkpoint (weights only)


def fine_tune(monkeypatch, tmp_path, lmdb, ckpt, *flags):
    """2 iterations of train.py from `ckpt` in tmp_path; returns the checkpoint it wrote."""
    monkeypatch.chdir(tmp_path)
    common = f"--name ft --path {lmdb} --ckpt {ckpt} --iter 2 --batch 4 --n_sample 4 --workers 0 --save_every 2"
    train.main([*common.split(), "--sample_every", "100", "--log_every", "1", *flags])
    return load_checkpoint(str(tmp_path / "checkpoint" / "ft" / "000002.pt"))


@pytest.mark.usefixtures("one_torch_thread")
def test_fine_tuning_with_freeze_d_keeps_the_first_blocks(tmp_path, reference, synthetic_lmdb, monkeypatch, capsys):
    source = load_checkpoint(str(converted(tmp_path, reference, "stylegan2", keys=("G", "D", "G_ema"))))
    tuned = fine_tune(monkeypatch, tmp_path, synthetic_lmdb, "stylegan2.pt", "--freeze_d", "2")
    assert "iteration 0, fresh optimisers" in capsys.readouterr().err
    assert tuned["args"].position == "none" and tuned["args"].freeze_d == 2
    for name, tensor in source["d"].items():  # blocks 1-2: fromRGB and the residual blocks at 32 and 16 px
        frozen = name.split(".")[:2] in (["convs", "0"], ["convs", "1"], ["convs", "2"])
        assert torch.equal(tuned["d"][name], tensor) == (frozen or name.endswith("kernel")), name
    assert not torch.equal(tuned["g"]["conv1.conv.weight"], source["g"]["conv1.conv.weight"])


@pytest.mark.usefixtures("one_torch_thread")
def test_a_stylegan2_checkpoint_warm_starts_mspe(tmp_path, reference, synthetic_lmdb, monkeypatch, capsys):
    converted(tmp_path, reference, "stylegan2")  # G_ema only, as NVIDIA's network pickles often are
    capsys.readouterr()
    tuned = fine_tune(monkeypatch, tmp_path, synthetic_lmdb, "stylegan2.pt", "--position", "mspe")
    log = capsys.readouterr().err
    assert "position none to mspe" in log
    # with the blur kernels
    assert "loaded 68: style (4), conv1 (5), to_rgb1 (4), convs (33), to_rgbs (15), noises (7)" in log, log
    assert "new, initialised as from scratch: pes.0.gamma, pes.1.gamma, pes.2.gamma" in log
    assert "dropped: input.input" in log and "d: not in the checkpoint, trained from scratch" in log
    assert "g: warm start from stylegan2.pt ('g_ema')" in log  # the one generator starts both
    assert tuned["args"].position == "mspe" and "pes.0.gamma" in tuned["g_ema"] and "input.input" not in tuned["g_ema"]
    with pytest.raises(SystemExit, match="size: .* has 32, the command line 64"):
        fine_tune(monkeypatch, tmp_path, synthetic_lmdb, "stylegan2.pt", "--position", "mspe", "--size", "64")
