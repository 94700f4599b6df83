"""checkpoint.py: the pieces every script relies on to read its command line and checkpoints."""

import argparse

import pytest

from checkpoint import add_checkpoint_arguments, explicit_flags, merge_model_config


def parser_with_model_flags(**options):
    parser = argparse.ArgumentParser(**options)
    add_checkpoint_arguments(parser)
    parser.add_argument("files", nargs="+")
    return parser


@pytest.mark.parametrize("allow_abbrev", [True, False])
def test_explicit_flags_sees_every_spelling_argparse_accepts(allow_abbrev):
    parser = parser_with_model_flags(allow_abbrev=allow_abbrev)
    argv = ["--size=64", "--affine", "--position", "mspe", "a.png"]
    if allow_abbrev:
        argv += ["--channel_ma", "16"]
    expected = {"size", "affine", "position", "files"} | ({"channel_max"} if allow_abbrev else set())
    assert explicit_flags(parser, argv) == expected


def test_explicit_flags_ignores_the_defaults_of_set_defaults():
    parser = parser_with_model_flags()
    parser.set_defaults(position="mspe")  # benchmarks/bench.py's default workload
    assert explicit_flags(parser, ["a.png"]) == {"files"}
    assert explicit_flags(parser, ["--position", "none", "a.png"]) == {"position", "files"}


def test_an_abbreviated_flag_that_contradicts_the_checkpoint_is_refused():
    parser = parser_with_model_flags()
    argv = ["--pos", "sspe", "a.png"]
    args = parser.parse_args(argv)
    checkpoint_args = argparse.Namespace(size=32, position="mspe")
    with pytest.raises(SystemExit, match="position"):
        merge_model_config(checkpoint_args, args, explicit_flags(parser, argv))
    merged = merge_model_config(checkpoint_args, parser.parse_args(["a.png"]), explicit_flags(parser, ["a.png"]))
    assert (merged.position, merged.size) == ("mspe", 32)
