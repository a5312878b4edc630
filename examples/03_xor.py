"""Assignment 3 in a few lines: the XOR 2-2-1 network, by gradient descent and by lazy search.

Run:  python examples/03_xor.py [--quick]

`--quick` (accepted anywhere by every example) runs 20 lazy searches instead of 1000. XOR needs
no data files, so any other argument is ignored.
"""

import sys
import time

import numpy as np

from fastdl import xor

quick = "--quick" in sys.argv[1:]

# The course's uniform initial weights, from which its write-up varies the learning rate:
# RandomState(42) draws 9 from normal(0, 1) (its other initialisation), then these 9 from
# uniform(-1, 1) (layout in fastdl/xor.py: two hidden units with a bias and two inputs each,
# then the output unit).
course_rng = np.random.RandomState(42)
course_rng.normal(0, 1, 9)
initial_weights = course_rng.uniform(-1, 1, 9)

# Full-batch gradient descent until no XOR point is on the wrong side of 0.5. A larger
# learning rate takes bigger steps, so it needs fewer of them; training stops at the first
# state that classifies all four points, so the outputs sit only just past 0.5.
print(f"{'lr':>5}{'iterations':>12}{'final MSE':>11}   outputs at (0,0) (0,1) (1,0) (1,1)")
for lr in (0.3, 0.6, 0.8):
    result = xor.train_xor(initial_weights, lr)
    outputs = " ".join(f"{out:.5f}" for out in xor.xor_forward(result.weights))
    status = "" if result.converged else "  (did not converge)"
    print(f"{lr:>5}{result.n_iterations:>12,}{result.mse[-1]:>11.4f}   {outputs}{status}")

# The lazy alternative: draw random weights until one network happens to solve XOR. Each
# search has its own random stream, so the searches run in parallel and the counts are the
# same on every backend and thread count.
n_searches = 20 if quick else 1000
start = time.perf_counter()
draws = xor.lazy_search(n_searches, seed=0)  # the first call also compiles the kernel
seconds = time.perf_counter() - start
stats = xor.lazy_search_stats(draws)
print(f"\nlazy search: {n_searches} searches, {stats['total_draws']:,} random networks in "
      f"{seconds:.2f} s")
print(f"  {'draws per success, mean':<30}{stats['mean']:>12,.0f}")
print(f"  {'draws per success, std':<30}{stats['std']:>12,.0f}")
print(f"  {'P(one draw solves XOR)':<30}{stats['p']:>12.2e}   "
      f"95% interval {stats['p_low']:.2e} to {stats['p_high']:.2e}")
