#!/bin/bash
# The texture-sticking evidence of one model (report.md): its pictures into evidence/sticking/MODEL/
# and the four numbers of the table printed (metrics.py sticking at spreads 0.5 and 1.0, and at 0.5
# with every render's own noise maps and with none), then report.md's two rows of the model.
#
#     bash evidence/sticking/run.sh MODEL CHECKPOINT      (from the repository root)
#
# PYTHON (default python) runs the scripts; OMP_NUM_THREADS defaults to 1.
set -euo pipefail
model=$1
ckpt=$2
python=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

"$python" generate.py --name "sticking-$model" --ckpt "$ckpt" --mode sticking --seeds 0-3 --n_sample 64 \
    --spread 0.5 --pics 64
mkdir -p "evidence/sticking/$model"
cp "generate/sticking-$model/sticking/"*.png "evidence/sticking/$model/"
for spread in 0.5 1.0; do
    "$python" metrics.py sticking --ckpt "$ckpt" --labels "$model" --n 64 --centres 8 --spread "$spread" \
        --out "metrics/sticking-$model-$spread" --device cpu
done
for noise in own zero; do
    "$python" metrics.py sticking --ckpt "$ckpt" --labels "$model" --n 64 --centres 8 --spread 0.5 --noise "$noise" \
        --out "metrics/sticking-$model-$noise" --device cpu
done

# report.md's two rows of this model: the numbers, and the pictures
"$python" - "$model" <<'PYTHON'
import json
import sys

model = sys.argv[1]
cells = []
for key in ("0.5", "1.0", "own", "zero"):
    with open(f"metrics/sticking-{model}-{key}/sticking.json") as file:
        result = json.load(file)["results"][0]
    cells.append(f"{result['sticking_db']:.2f} ± {result['sticking_db_std']:.2f}")
print(f"| {model} | " + " | ".join(cells) + " |")
pictures = [
    " ".join(f'<img src="{model}/seed{seed:04d}_{name}.png" width="64" alt="{model}, seed {seed}: {name}">'
             for name in ("central", "average", "strip"))
    for seed in range(4)
]
print(f"| {model} | " + " | ".join(pictures) + " |")
PYTHON
