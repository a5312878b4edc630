"""A NumPy array seen through ``__cuda_array_interface__``, as CuPy arrays and torch CUDA tensors
show theirs: its host address stands for the device pointer. fastdl's layout and overlap checks
read only the interface, so they can be tested on it without a device."""


class HostAsDevice:
    def __init__(self, array):
        self.array = array
        self.shape, self.dtype = array.shape, array.dtype

    @property
    def __cuda_array_interface__(self):
        strides = None if self.array.flags.c_contiguous else self.array.strides
        return {"shape": self.array.shape, "strides": strides, "data": (self.array.ctypes.data, False),
                "typestr": self.array.dtype.str, "version": 3}
