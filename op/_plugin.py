"""Lazy, fail-soft loading of the CUDA extensions in this folder.

Nothing is compiled at import time. The first CUDA tensor that reaches an op asks for its
extension; `torch.utils.cpp_extension.load` builds it (once per machine, cached by torch).
If the build is impossible (no nvcc, no compiler, a mismatched toolkit) one warning is printed
and the op keeps using its PyTorch reference implementation, except where impl='cuda' asks for
the kernel by name, which then fails (`unbuilt`).
"""

import os
import warnings

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
_loaded = {}
build_errors = {}  # extension name -> why it did not build (failure_reason)

# STYLEGAN_OP_IMPL=ref forces the PyTorch reference implementations everywhere (for comparisons
# and for machines where building is not wanted).
FORCE_REF = os.environ.get("STYLEGAN_OP_IMPL", "auto") == "ref"


def get_plugin(name, sources):
    """Return the compiled extension `name`, or None when it cannot be built here.

    Args:
        name: extension name (also torch's build-cache folder name).
        sources: file names inside op/ (.cpp and .cu).
    """
    if FORCE_REF:
        return None
    if name in _loaded:
        return _loaded[name]
    module = None
    try:
        from torch.utils.cpp_extension import load

        module = load(
            name=name,
            sources=[os.path.join(_HERE, source) for source in sources],
            extra_cuda_cflags=["--use_fast_math"],
            verbose=False,
        )
    except Exception as error:  # any build failure means: fall back, say so once
        reason = failure_reason(error)
        build_errors[name] = reason
        warnings.warn(
            f"op/{name}: could not build the CUDA extension ({reason}); using the PyTorch "
            "reference implementation. Install a CUDA toolkit matching torch.version.cuda "
            "to get the fused kernel, or set STYLEGAN_OP_IMPL=ref to silence this.",
            stacklevel=3,
        )
    _loaded[name] = module
    return module


def failure_reason(error):
    """The line of a build error that says what went wrong: the compiler's first error or fatal
    line (ninja's output ends with "build stopped: subcommand failed"), else the last line."""
    lines = [line.strip() for line in str(error).strip().splitlines()]
    compiler_errors = [
        line
        for line in lines
        if ("error" in line.lower() or "fatal" in line.lower()) and not line.startswith("Error building extension")
    ]
    if compiler_errors:
        return compiler_errors[0]
    return lines[-1] if lines else type(error).__name__


def unbuilt(name):
    """The error of impl='cuda' when extension `name` is not there: a kernel asked for by name must
    run, not the reference in its place (a test of the kernel would compare the reference with
    itself and pass)."""
    reason = build_errors.get(name, "STYLEGAN_OP_IMPL=ref" if FORCE_REF else "not built")
    return RuntimeError(
        f"impl='cuda': the CUDA extension op/{name} is not available ({reason}); impl='auto' falls back to the "
        "reference, or build it with a CUDA toolkit (nvcc) and ninja installed"
    )


def use_cuda_kernel(tensor, impl):
    """Decide between the CUDA kernel and the reference for `tensor` under `impl`.

    Code that torch.compile traces gets the reference: inductor fuses its plain PyTorch ops,
    where an extension call would break the graph.
    """
    if impl not in ("auto", "ref", "cuda"):
        raise ValueError(f"impl must be 'auto', 'ref' or 'cuda', not {impl!r}")
    if impl == "ref" or torch.compiler.is_compiling():
        return False
    if not tensor.is_cuda:
        if impl == "cuda":
            raise ValueError("impl='cuda' needs a CUDA tensor")
        return False
    return True
