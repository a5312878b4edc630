# A max-heap of (key, index) pairs holding a query's k best: the largest key on top, the larger
# index above on ties, so that the k smallest keys (ties to the smaller index) stay. Included by
# neighbors.pyx and kdtree.pyx (an inline function cannot be cimported from another module
# without a .pxd).


cdef inline bint _above(double key_a, int64_t idx_a, double key_b, int64_t idx_b) noexcept nogil:
    """(key_a, idx_a) > (key_b, idx_b): the heap order, larger index wins ties."""
    return key_a > key_b or (key_a == key_b and idx_a > idx_b)


cdef inline void _sift_down(double* keys, int64_t* index, Py_ssize_t size, Py_ssize_t pos) noexcept nogil:
    """Restore the max-heap on (keys, index) below `pos`."""
    cdef Py_ssize_t child
    cdef double key
    cdef int64_t idx
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _above(keys[child + 1], index[child + 1], keys[child], index[child]):
            child += 1
        if not _above(keys[child], index[child], keys[pos], index[pos]):
            return
        key = keys[pos]
        keys[pos] = keys[child]
        keys[child] = key
        idx = index[pos]
        index[pos] = index[child]
        index[child] = idx
        pos = child


cdef inline Py_ssize_t _push(
    double* keys, int64_t* index, Py_ssize_t capacity, Py_ssize_t size, double key, int64_t idx,
) noexcept nogil:
    """Offer (key, idx) to a max-heap holding the `capacity` smallest pairs; returns the new size."""
    cdef Py_ssize_t pos, parent
    if size < capacity:
        pos = size
        keys[pos] = key
        index[pos] = idx
        while pos > 0:
            parent = (pos - 1) // 2
            if _above(keys[parent], index[parent], keys[pos], index[pos]):
                break
            keys[pos], keys[parent] = keys[parent], keys[pos]
            index[pos], index[parent] = index[parent], index[pos]
            pos = parent
        return size + 1
    if key < keys[0] or (key == keys[0] and idx < index[0]):
        keys[0] = key
        index[0] = idx
        _sift_down(keys, index, size, 0)
    return size
