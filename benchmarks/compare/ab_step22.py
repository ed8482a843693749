"""In-process A/B of step 22 (README, per-step history): the attention weights' exponent in one pass, CPU.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step22.py forward --threads 2 --rounds 8
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step22.py train --length one-year --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step22.py train --length 8192 --threads 1

Step 22: the exponent x log2 e - m log2 e of the attention weights is formed in one pass and `exp2` runs
unclamped (`chunked._exp_shifted_`; before, step 20: subtract, clamp, multiply, `exp2`). The baseline swaps the
step-20 function back in; the variants alternate call by call in one process, and their outputs are compared.
"""

from __future__ import annotations

from ab_exp2 import exp_shifted_step20_, install  # the script beside this one (the same folder is on sys.path)

from reformer.bench.ab import swap_main
from reformer.model import chunked

if __name__ == "__main__":
    swap_main(__doc__ or "", {"step21": install(exp_shifted_step20_), "step22": install(chunked._exp_shifted_)})
