"""Multi-class perceptron kernels (numpy reference); mirrors kernels/cpu/perceptron.py.

X1 (n, d + 1) holds the samples with a trailing column of ones, W (d + 1, c) the weights with the
bias as its last row, codes (n,) int64 the class of each sample. rule 0 is the course's sigmoid
rule (delta = onehot - sigmoid(scores)), rule 1 the classic perceptron (update on mistakes only).
"""

import numpy as np

RULE_SIGMOID = 0
RULE_CLASSIC = 1


def _sigmoid(z):
    """1 / (1 + exp(-z)) through exp(-|z|), which never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _delta(scores, codes, rule, out):
    """Write each row's update direction into out (n, c); returns the number of correct argmaxes."""
    n, n_classes = scores.shape
    rows = np.arange(n)
    predicted = np.argmax(scores, axis=1)  # the first maximum, as the compiled kernels
    n_correct = int(np.count_nonzero(predicted == codes))
    if rule == RULE_SIGMOID:
        out[...] = -_sigmoid(scores)
        out[rows, codes] += 1
    else:
        wrong = predicted != codes
        out[...] = 0
        out[rows[wrong], codes[wrong]] = 1
        out[rows[wrong], predicted[wrong]] = -1
    return n_correct


def batch_epoch(X1, codes, lr, rule, W, scores, grad, n_threads):
    """One full-batch update W += lr * X1.T @ delta(X1 @ W); returns the correct count before it."""
    np.matmul(X1, W, out=scores)
    n_correct = _delta(scores, codes, rule, scores)
    np.matmul(X1.T, scores, out=grad)
    grad *= lr
    W += grad
    return n_correct


def online_epoch(X1, codes, lr, rule, W, work, n_threads):
    """Per-sample updates in dataset order; returns how many samples were right before their update."""
    n_correct = 0
    for i in range(X1.shape[0]):
        x = X1[i]
        scores = x @ W
        y = codes[i]
        predicted = int(np.argmax(scores))
        n_correct += predicted == y
        if rule == RULE_SIGMOID:
            work[:] = -_sigmoid(scores)
            work[y] += 1
            work *= lr
            W += np.outer(x, work)
        elif predicted != y:
            step = (lr * x).astype(W.dtype)
            W[:, y] += step
            W[:, predicted] -= step
    return n_correct
