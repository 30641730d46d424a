"""The INT8 entropy calibrator of TensorRT 10.x, fed with the same degraded crops as the other INT8 paths."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ...fsutil import atomic_write


# =============================================================== calibration
class CalibrationFeeder:
    """The pure-Python half of the INT8 calibrator: batches in, cache file in and out."""

    def __init__(self, batches: Iterable[np.ndarray], batch_size: int, cache_path):
        self._it = iter(batches)
        self.batch_size = int(batch_size)
        self.cache_path = Path(cache_path)
        self.served = 0

    def next_batch(self) -> np.ndarray | None:
        x = next(self._it, None)
        if x is not None:
            self.served += 1
        return x

    def read_cache(self) -> bytes | None:
        if self.cache_path.is_file():
            return self.cache_path.read_bytes()
        return None

    def write_cache(self, data) -> None:
        try:
            payload = memoryview(data).tobytes()
        except TypeError:
            payload = bytes(data)
        atomic_write(self.cache_path, payload)


def entropy_calibrator(trt, feeder: CalibrationFeeder, device: str = "cuda"):
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``feeder``; batches are copied into a torch
    CUDA tensor that stays alive until the next batch (TensorRT reads it by pointer)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feeder = feeder
            self._buf = None

        def get_batch_size(self):  # deprecated in 10.x (no implicit batch) but still part of the interface
            return self.feeder.batch_size

        def get_batch(self, names):
            x = self.feeder.next_batch()
            if x is None:
                return None
            import torch

            self._buf = torch.from_numpy(x).to(device).contiguous()
            if self._buf.is_cuda:
                torch.cuda.current_stream(self._buf.device).synchronize()
            return [int(self._buf.data_ptr())]

        def read_calibration_cache(self):
            return self.feeder.read_cache()

        def write_calibration_cache(self, cache):
            self.feeder.write_cache(cache)

    return EntropyCalibrator()


