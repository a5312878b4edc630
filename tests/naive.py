"""Slow, obviously correct references for the kernels: plain Python loops over float64 values.

Every function here trades speed for being checkable by eye; tests keep their shapes small.
"""

import decimal
import itertools
import math

import numpy as np


_DIGITS = decimal.Context(prec=40)


def normal_cdf(v):
    """Phi(v) of float v in float64, within a few ulps: libm's erfc of u = -v / sqrt(2) rounded,
    put right for that rounding to first order (erfc(u + d) = erfc(u) - d 2 / sqrt(pi) e^(-u^2), d
    from 40 digits), which erfc(u) alone carries u^2 times (400 ulps at v = -28)."""
    exact = _DIGITS.divide(decimal.Decimal(-v), _DIGITS.sqrt(decimal.Decimal(2)))
    u = float(exact)
    d = float(_DIGITS.subtract(exact, decimal.Decimal(u)))
    return 0.5 * (math.erfc(u) - d * 2 / math.sqrt(math.pi) * math.exp(-u * u))


def normal_density(v):
    """phi(v) = e^(-v^2 / 2) / sqrt(2 pi) of float v, v^2's rounding put back (from 40 digits)."""
    square = v * v
    rest = float(_DIGITS.subtract(_DIGITS.multiply(decimal.Decimal(v), decimal.Decimal(v)), decimal.Decimal(square)))
    return math.exp(-square / 2) * (1 - rest / 2) / math.sqrt(2 * math.pi)


def _rows(X):
    """Rows of X as lists of Python floats (float64 arithmetic, no BLAS)."""
    return [[float(v) for v in row] for row in np.asarray(X)]


def sq_euclidean(a, b):
    """Squared Euclidean distance between two sequences, summed in float64."""
    total = 0.0
    for x, y in zip(a, b):
        diff = float(x) - float(y)
        total += diff * diff
    return total


def pairwise_distances(A, B=None, squared=False):
    """(n, m) float64 matrix of (squared) Euclidean distances, one pair at a time."""
    rows_a = _rows(A)
    rows_b = rows_a if B is None else _rows(B)
    out = np.empty((len(rows_a), len(rows_b)))
    for i, a in enumerate(rows_a):
        for j, b in enumerate(rows_b):
            d2 = sq_euclidean(a, b)
            out[i, j] = d2 if squared else math.sqrt(d2)
    return out


def knn(X_query, X_ref, k):
    """(distances, indices) of the k nearest rows of X_ref: sort by (exact distance, index)."""
    rows_r = _rows(X_ref)
    distances, indices = [], []
    for q in _rows(X_query):
        ranked = sorted((sq_euclidean(q, r), j) for j, r in enumerate(rows_r))[:k]
        distances.append([math.sqrt(d2) for d2, _ in ranked])
        indices.append([j for _, j in ranked])
    return np.array(distances, dtype=np.float64).reshape(-1, k), np.array(indices, dtype=np.int64).reshape(-1, k)


def majority_vote(neighbor_codes, n_classes):
    """Most frequent code per row; the first (smallest) code wins a tie."""
    out = []
    for row in np.asarray(neighbor_codes):
        counts = [0] * n_classes
        for code in row:
            counts[int(code)] += 1
        best = 0
        for c in range(n_classes):
            if counts[c] > counts[best]:
                best = c
        out.append(best)
    return np.array(out, dtype=np.int64)


def class_centroids(X, y, n_classes=None):
    """Mean row of each class code 0..n_classes-1, accumulated in float64."""
    rows = _rows(X)
    codes = [int(c) for c in np.asarray(y)]
    n_classes = max(codes) + 1 if n_classes is None else n_classes
    n_features = len(rows[0])
    sums = [[0.0] * n_features for _ in range(n_classes)]
    counts = [0] * n_classes
    for row, c in zip(rows, codes):
        counts[c] += 1
        for f, v in enumerate(row):
            sums[c][f] += v
    return np.array([[s / counts[c] for s in sums[c]] for c in range(n_classes)])


def knn_classify(X_train, y_train, X_test, k):
    """Labels by majority vote among the k nearest training rows (ties to the smaller label)."""
    classes = sorted(set(np.asarray(y_train).tolist()))
    code_of = {label: code for code, label in enumerate(classes)}
    codes = np.array([code_of[label] for label in np.asarray(y_train).tolist()])
    _, indices = knn(X_test, X_train, k)
    votes = majority_vote(codes[indices], len(classes))
    return np.array([classes[v] for v in votes])


def nearest_centroid_classify(X_train, y_train, X_test):
    """Label of the nearest class mean (ties to the smaller label)."""
    classes = sorted(set(np.asarray(y_train).tolist()))
    code_of = {label: code for code, label in enumerate(classes)}
    codes = [code_of[label] for label in np.asarray(y_train).tolist()]
    centroids = class_centroids(X_train, codes, len(classes))
    _, nearest = knn(X_test, centroids, 1)
    return np.array([classes[c] for c in nearest[:, 0]])


def shift_rows(X, origin, scale, out_dtype):
    """(X - origin) * scale row by row in float64, stored in out_dtype, and the stored rows' norms."""
    out = np.empty(X.shape, dtype=out_dtype)
    norms = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        norm = 0.0
        for f in range(X.shape[1]):
            out[i, f] = (float(X[i, f]) - float(origin[f])) * scale
            norm += float(out[i, f]) ** 2
        norms[i] = norm
    return out, norms


def column_stats(X):
    """Float64 sums (rows added in order), minima and maxima of X's columns."""
    sums, low, high = [], [], []
    for f in range(X.shape[1]):
        column = [float(value) for value in X[:, f]]
        total = 0.0
        for value in column:
            total += value
        sums.append(total)
        low.append(min(column))
        high.append(max(column))
    return np.array(sums), np.array(low), np.array(high)


# Batch normalisation ---------------------------------------------------------------------------
# The per-channel kernels (kernels norm.*) over rows (n, channels), one value at a time.


def channel_moments(x):
    """(mean, biased variance) of x's columns: float64 sums over the rows in order, two passes."""
    n, channels = x.shape
    mean, var = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        total = 0.0
        for i in range(n):
            total += float(x[i, c])
        mean[c] = total / n
        total = 0.0
        for i in range(n):
            d = float(x[i, c]) - mean[c]
            total += d * d
        var[c] = total / n
    return mean, var


def channel_sums(dout, xhat):
    """Float64 per-channel sums of dout and of dout * xhat (the gradients of beta and gamma)."""
    n, channels = dout.shape
    sum_dout, sum_dout_xhat = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        for i in range(n):
            sum_dout[c] += float(dout[i, c])
            sum_dout_xhat[c] += float(dout[i, c]) * float(xhat[i, c])
    return sum_dout, sum_dout_xhat


def normalize(x, mean, inv_std, gamma, beta):
    """(xhat, out) float64: xhat = (x - mean) * inv_std, out = xhat * gamma + beta per channel."""
    xhat, out = np.empty(x.shape), np.empty(x.shape)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            xhat[i, c] = (float(x[i, c]) - float(mean[c])) * float(inv_std[c])
            out[i, c] = xhat[i, c] * float(gamma[c]) + float(beta[c])
    return xhat, out


def normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat):
    """dx float64 = inv_std * (dout * gamma - mean_dxhat - xhat * mean_dxhat_xhat) per channel."""
    dx = np.empty(dout.shape)
    for i in range(dout.shape[0]):
        for c in range(dout.shape[1]):
            dx[i, c] = float(inv_std[c]) * (float(dout[i, c]) * float(gamma[c]) - float(mean_dxhat[c])
                                            - float(xhat[i, c]) * float(mean_dxhat_xhat[c]))
    return dx


# Perceptron ------------------------------------------------------------------------------------
# The multi-class perceptron's epochs (kernels perceptron.*), one sample and one weight at a time.


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _scores(x, W):
    """[sum_f x[f] * W[f][c] for each class c], summed in feature order."""
    return [sum(x[f] * W[f][c] for f in range(len(x))) for c in range(len(W[0]))]


def _first_argmax(values):
    best = 0
    for c in range(1, len(values)):
        if values[c] > values[best]:
            best = c
    return best


def _direction(scores, y, rule):
    """onehot - sigmoid(scores) ("sigmoid"), or +1 / -1 at the true / predicted class on a mistake."""
    predicted = _first_argmax(scores)
    if rule == "sigmoid":
        return [(1.0 if c == y else 0.0) - _sigmoid(s) for c, s in enumerate(scores)], predicted
    delta = [0.0] * len(scores)
    if predicted != y:
        delta[y] += 1.0
        delta[predicted] -= 1.0
    return delta, predicted


def perceptron_batch_epoch(X1, codes, lr, rule, W):
    """(new W, correct count of the old W): W += lr * X1.T @ delta, all deltas from the old W."""
    rows, W = _rows(X1), _rows(W)
    deltas, n_correct = [], 0
    for x, y in zip(rows, codes):
        delta, predicted = _direction(_scores(x, W), int(y), rule)
        deltas.append(delta)
        n_correct += predicted == int(y)
    new = [[W[f][c] + lr * sum(rows[i][f] * deltas[i][c] for i in range(len(rows)))
            for c in range(len(W[0]))] for f in range(len(W))]
    return np.array(new), n_correct


def perceptron_online_epoch(X1, codes, lr, rule, W):
    """(new W, samples right before their own update): the batch rule one sample at a time."""
    rows, W = _rows(X1), _rows(W)
    n_correct = 0
    for x, y in zip(rows, codes):
        delta, predicted = _direction(_scores(x, W), int(y), rule)
        n_correct += predicted == int(y)
        for f in range(len(W)):
            for c in range(len(W[0])):
                W[f][c] += lr * x[f] * delta[c]
    return np.array(W), n_correct


# XOR -------------------------------------------------------------------------------------------
# The 2-2-1 XOR network (kernels xor.*): one point and one weight at a time, and the lazy search's
# counter-based weight generator written out with Python integers.

_XOR_POINTS = ((0.0, 0.0, 0.0), (0.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0, 0.0))
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _xor_sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


def xor_outputs(w):
    """Network outputs at (0,0), (0,1), (1,0), (1,1) for 9 weights."""
    w = [float(v) for v in w]
    outs = []
    for x1, x2, _ in _XOR_POINTS:
        h1 = _xor_sigmoid(w[0] + w[1] * x1 + w[2] * x2)
        h2 = _xor_sigmoid(w[3] + w[4] * x1 + w[5] * x2)
        outs.append(_xor_sigmoid(w[6] + w[7] * h1 + w[8] * h2))
    return outs


def xor_solves(w):
    """Every point on the right side of 0.5."""
    return all((out > 0.5) == (target > 0.5) for out, (_, _, target) in zip(xor_outputs(w), _XOR_POINTS))


def train_xor(weights, lr, max_iter, store=None):
    """(weights, mse list, misclassified list): gradient descent on half the MSE, checked before each step.

    store: a dtype each step's weights are rounded to (the state the kernels keep, float32 or
    float64; the arithmetic stays float64); None keeps them in float64.
    """
    w = [float(v) for v in weights]
    mse, wrong = [], []
    for t in range(max_iter):
        grad = [0.0] * 9
        sq, n_wrong = 0.0, 0
        for x1, x2, target in _XOR_POINTS:
            h1 = _xor_sigmoid(w[0] + w[1] * x1 + w[2] * x2)
            h2 = _xor_sigmoid(w[3] + w[4] * x1 + w[5] * x2)
            out = _xor_sigmoid(w[6] + w[7] * h1 + w[8] * h2)
            sq += (out - target) ** 2
            n_wrong += (out > 0.5) != (target > 0.5)
            d_out = (out - target) * out * (1.0 - out) / 4.0  # d/dout of mean((out - t)^2) / 2
            d_h1 = d_out * w[7] * h1 * (1.0 - h1)
            d_h2 = d_out * w[8] * h2 * (1.0 - h2)
            for k, g in enumerate((d_h1, d_h1 * x1, d_h1 * x2, d_h2, d_h2 * x1, d_h2 * x2,
                                   d_out, d_out * h1, d_out * h2)):
                grad[k] += g
        mse.append(sq / 4.0)
        wrong.append(n_wrong)
        if n_wrong == 0 or t + 1 == max_iter:
            break
        w = [wk - lr * gk for wk, gk in zip(w, grad)]
        if store is not None:
            w = [float(np.dtype(store).type(wk)) for wk in w]
    return np.array(w), mse, wrong


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def xor_draw(seed, search, draw):
    """The 9 weights of draw `draw` of lazy-search stream (seed, search): polar-method pairs."""
    key = _mix64((_mix64(seed ^ _GOLDEN) + search * _GOLDEN) & _MASK64)
    normals = []
    for pair in range(5):
        attempt = 0
        while True:
            counter = (draw * 5 + pair) * 256 + attempt
            h = _mix64((key + counter * _GOLDEN) & _MASK64)
            u = ((h >> 32) + 0.5) * 2.0 ** -31 - 1.0
            v = ((h & 0xFFFFFFFF) + 0.5) * 2.0 ** -31 - 1.0
            s = u * u + v * v
            if s < 1.0:
                factor = math.sqrt(-2.0 * math.log(s) / s)
                normals += [u * factor, v * factor]
                break
            attempt += 1
    w = [0.0] * 9
    for n, k in enumerate((0, 3, 6, 7, 8, 1, 2, 4, 5)):
        w[k] = normals[n]
    return np.array(w)


# Convolution -----------------------------------------------------------------------------------
# conv2d and its gradients (kernels conv.*), channels-last, one output pixel and one weight at a
# time over an explicitly zero-padded float64 copy.


def conv2d_padding(height, width, kh, kw, strides, padding):
    """((top, bottom), (left, right)) for "valid", "same" (TensorFlow's rule) or explicit pads."""
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        pads = []
        for size, k, s in ((height, kh, sh), (width, kw, sw)):
            out = math.ceil(size / s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return tuple(tuple(p) for p in padding)


def _conv2d_setup(x, kernel, strides, padding):
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    n, height, width, _ = x.shape
    kh, kw, _, _ = kernel.shape
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    (top, bottom), (left, right) = conv2d_padding(height, width, kh, kw, strides, padding)
    padded = np.zeros((n, height + top + bottom, width + left + right, x.shape[3]))
    padded[:, top : top + height, left : left + width] = x
    out_h = (padded.shape[1] - kh) // sh + 1
    out_w = (padded.shape[2] - kw) // sw + 1
    return x, kernel, padded, (sh, sw), (top, left), (out_h, out_w)


def conv2d(x, kernel, bias=None, strides=1, padding="valid"):
    """(n, out_h, out_w, out_channels) float64: every output the sum over its window of the window
    times the filter (output by output, the window and the filters as whole arrays)."""
    x, kernel, padded, (sh, sw), _, (out_h, out_w) = _conv2d_setup(x, kernel, strides, padding)
    kh, kw, c_in, c_out = kernel.shape
    out = np.zeros((x.shape[0], out_h, out_w, c_out))
    for n in range(x.shape[0]):
        for oh in range(out_h):
            for ow in range(out_w):
                window = padded[n, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw]
                out[n, oh, ow] = np.tensordot(window, kernel, axes=3)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)
    return out


def shift_sum(z, kh, kw, pad_top, pad_left, out_h, out_w):
    """(n, out_h, out_w, filters) float64: out[n, oh, ow, f] = the sum over taps (i, j) of
    z[n, oh - pad_top + i, ow - pad_left + j, (i kw + j) filters + f] where that lies inside z."""
    n_images, height, width, taps = z.shape
    filters = taps // (kh * kw)
    out = np.zeros((n_images, out_h, out_w, filters))
    for n, oh, ow, i, j, f in itertools.product(range(n_images), range(out_h), range(out_w), range(kh), range(kw),
                                                range(filters)):
        h, w = oh - pad_top + i, ow - pad_left + j
        if 0 <= h < height and 0 <= w < width:
            out[n, oh, ow, f] += z[n, h, w, (i * kw + j) * filters + f]
    return out


def shift_spread(dout, kh, kw, pad_top, pad_left, height, width):
    """(n, height, width, kh kw filters) float64: dz[n, h, w, (i kw + j) filters + f] =
    dout[n, h + pad_top - i, w + pad_left - j, f] where that lies inside dout, else 0."""
    n_images, out_h, out_w, filters = dout.shape
    dz = np.zeros((n_images, height, width, kh * kw * filters))
    for n, h, w, i, j, f in itertools.product(range(n_images), range(height), range(width), range(kh), range(kw),
                                              range(filters)):
        oh, ow = h + pad_top - i, w + pad_left - j
        if 0 <= oh < out_h and 0 <= ow < out_w:
            dz[n, h, w, (i * kw + j) * filters + f] = dout[n, oh, ow, f]
    return dz


def conv2d_grad(x, kernel, dout, strides=1, padding="valid"):
    """(dx, dkernel, dbias) in float64, each output's gradient spread over its window."""
    x, kernel, padded, (sh, sw), (top, left), (out_h, out_w) = _conv2d_setup(x, kernel, strides, padding)
    dout = np.asarray(dout, dtype=np.float64)
    kh, kw, c_in, c_out = kernel.shape
    dpadded = np.zeros_like(padded)
    dkernel = np.zeros_like(kernel)
    dbias = np.zeros(c_out)
    # Output by output: its gradient g (c_out,) spread over its window, the window's channels and
    # the filters as whole arrays (the seven loops written out took 21 s at 4 x 13 x 13 x 64 -> 72).
    for n in range(x.shape[0]):
        for oh in range(out_h):
            for ow in range(out_w):
                g = dout[n, oh, ow]
                window = (n, slice(oh * sh, oh * sh + kh), slice(ow * sw, ow * sw + kw))
                dbias += g
                dkernel += padded[window][..., None] * g
                dpadded[window] += kernel @ g
    dx = dpadded[:, top : top + x.shape[1], left : left + x.shape[2]].copy()
    return dx, dkernel, dbias


def transpose_crop(size, kernel, stride, padding):
    """(output size, first row kept) of Keras' Conv2DTranspose along one axis: of the full output
    ((size - 1) * stride + kernel), "same" keeps size * stride rows from max(kernel - stride, 0) // 2
    on, "valid" size * stride + max(kernel - stride, 0) from the top."""
    if padding == "same":
        return size * stride, max(kernel - stride, 0) // 2
    return size * stride + max(kernel - stride, 0), 0


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid"):
    """(n, out_h, out_w, filters) float64, Keras' Conv2DTranspose with kernel (kh, kw, filters, in).

    Every input pixel times the kernel is added into a kh x kw window of a full-size output
    ((height - 1) * stride + kh rows), windows stride apart; Keras keeps height * stride rows
    ("same"), starting max(kh - stride, 0) // 2 rows in, or height * stride + max(kh - stride, 0)
    ("valid"), from the top; rows past the full output hold only the bias. The same for columns.
    """
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    n, height, width, c_in = x.shape
    kh, kw, c_out, _ = kernel.shape
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    (out_h, top), (out_w, left) = transpose_crop(height, kh, sh, padding), transpose_crop(width, kw, sw, padding)
    sizes, starts = (out_h, out_w), (top, left)
    full = np.zeros((n, max((height - 1) * sh + kh, starts[0] + sizes[0]),
                     max((width - 1) * sw + kw, starts[1] + sizes[1]), c_out))
    for b in range(n):
        for i in range(height):
            for j in range(width):
                full[b, i * sh : i * sh + kh, j * sw : j * sw + kw] += kernel @ x[b, i, j]
    out = full[:, starts[0] : starts[0] + sizes[0], starts[1] : starts[1] + sizes[1]].copy()
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)
    return out


# Dense -----------------------------------------------------------------------------------------
# dense and its gradients (kernels dense.*), one output and one weight at a time in float64.


def _activate(z, activation):
    if activation == "relu":
        return max(z, 0.0)
    if activation == "sigmoid":
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    if activation == "tanh":
        return math.tanh(z)
    if activation == "leaky_relu":
        return z if z >= 0 else 0.2 * z  # Keras 3's activations.leaky_relu
    return z


def dense(x, kernel, bias=None, activation=None):
    """(n, units) float64: activation(sum_f x[i, f] * kernel[f, j] + bias[j])."""
    rows, weights = _rows(x), _rows(kernel)
    units = len(weights[0])
    out = np.empty((len(rows), units))
    for i, row in enumerate(rows):
        for j in range(units):
            z = 0.0 if bias is None else float(bias[j])
            for f, value in enumerate(row):
                z += value * weights[f][j]
            out[i, j] = _activate(z, activation)
    return out


def dense_grad(x, kernel, dout):
    """(dx, dkernel, dbias) of x @ kernel + bias for the upstream gradient dout, summed by loops."""
    rows, weights, grads = _rows(x), _rows(kernel), _rows(dout)
    n_in, units = len(weights), len(weights[0])
    dx = np.zeros((len(rows), n_in))
    dkernel = np.zeros((n_in, units))
    dbias = np.zeros(units)
    for i, row in enumerate(rows):
        for j in range(units):
            g = grads[i][j]
            dbias[j] += g
            for f in range(n_in):
                dx[i, f] += weights[f][j] * g
                dkernel[f, j] += row[f] * g
    return dx, dkernel, dbias


# Pooling ---------------------------------------------------------------------------------------
# max_pool2d and its gradient (kernels pool.*), channels-last, one window at a time; TensorFlow's
# "same" padding (output ceil(size / stride), the odd cell at the bottom/right), padded cells never win.


def _pool_setup(shape, pool_size, strides, padding):
    ph, pw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    if strides is None:
        strides = (ph, pw)
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    h, w = shape[1], shape[2]
    if padding == "valid":
        return ph, pw, sh, sw, 0, 0, (h - ph) // sh + 1, (w - pw) // sw + 1
    out_h, out_w = math.ceil(h / sh), math.ceil(w / sw)
    pad_h = max((out_h - 1) * sh + ph - h, 0)
    pad_w = max((out_w - 1) * sw + pw - w, 0)
    return ph, pw, sh, sw, pad_h // 2, pad_w // 2, out_h, out_w


def _window_argmax(x, n, i, j, c, setup):
    """(row, col) of the first maximum, in row-major order, of window (i, j) among image cells."""
    ph, pw, sh, sw, top, left, _, _ = setup
    best = None
    for a in range(i * sh - top, i * sh - top + ph):
        for b in range(j * sw - left, j * sw - left + pw):
            if 0 <= a < x.shape[1] and 0 <= b < x.shape[2]:
                if best is None or float(x[n, a, b, c]) > float(x[n, best[0], best[1], c]):
                    best = (a, b)
    return best


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """(n, out_h, out_w, c) float64 maximum of every window."""
    x = np.asarray(x)
    setup = _pool_setup(x.shape, pool_size, strides, padding)
    out = np.empty((x.shape[0], setup[6], setup[7], x.shape[3]))
    for n in range(x.shape[0]):
        for i in range(setup[6]):
            for j in range(setup[7]):
                for c in range(x.shape[3]):
                    a, b = _window_argmax(x, n, i, j, c, setup)
                    out[n, i, j, c] = float(x[n, a, b, c])
    return out


def max_pool2d_grad(x, dout, pool_size=2, strides=None, padding="valid"):
    """(n, h, w, c) float64: each dout value added to its window's first maximum."""
    x = np.asarray(x)
    setup = _pool_setup(x.shape, pool_size, strides, padding)
    dx = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for i in range(setup[6]):
            for j in range(setup[7]):
                for c in range(x.shape[3]):
                    a, b = _window_argmax(x, n, i, j, c, setup)
                    dx[n, a, b, c] += float(dout[n, i, j, c])
    return dx


def _window_cells(shape, i, j, setup):
    """The image cells (row, col) of window (i, j), padding left out, in row-major order."""
    ph, pw, sh, sw, top, left, _, _ = setup
    return [(a, b) for a in range(i * sh - top, i * sh - top + ph) for b in range(j * sw - left, j * sw - left + pw)
            if 0 <= a < shape[1] and 0 <= b < shape[2]]


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """(n, out_h, out_w, c) float64 mean of every window over its image cells (TensorFlow's avg_pool:
    padded cells neither add nor count)."""
    x = np.asarray(x)
    setup = _pool_setup(x.shape, pool_size, strides, padding)
    out = np.empty((x.shape[0], setup[6], setup[7], x.shape[3]))
    for n in range(x.shape[0]):
        for i in range(setup[6]):
            for j in range(setup[7]):
                cells = _window_cells(x.shape, i, j, setup)
                for c in range(x.shape[3]):
                    out[n, i, j, c] = sum(float(x[n, a, b, c]) for a, b in cells) / len(cells)
    return out


def avg_pool2d_grad(x, dout, pool_size=2, strides=None, padding="valid"):
    """(n, h, w, c) float64: each dout value divided by its window's cell count, added to those cells."""
    x = np.asarray(x)
    setup = _pool_setup(x.shape, pool_size, strides, padding)
    dx = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for i in range(setup[6]):
            for j in range(setup[7]):
                cells = _window_cells(x.shape, i, j, setup)
                for c in range(x.shape[3]):
                    for a, b in cells:
                        dx[n, a, b, c] += float(dout[n, i, j, c]) / len(cells)
    return dx


def numeric_grad(f, array, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of `array` (changed in
    place while f runs, then restored): the reference every backward pass is checked against."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad
