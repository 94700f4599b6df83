"""Cache the Inception statistics of real images, as rosinality's calc_inception.py.

The same as `python metrics.py inception ...`, kept under the familiar name:

    python calc_inception.py --inception pt_inception-2015-12-05-6726825d.pth --path LMDB --size 256

writes metrics/inception_<lmdb>_<size>.npz (or --real_stats FILE), which
`python metrics.py fid --real_stats FILE ...` reads.
"""

import sys

from metrics import main

if __name__ == "__main__":
    main(["inception", *sys.argv[1:]])
