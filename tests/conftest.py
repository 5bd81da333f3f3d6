import numpy as np
import pytest
import torch

# The tests fit small models on small batches, where intra-op threads only add
# synchronization (and oversubscribe the CPU when test runs share a machine).
torch.set_num_threads(1)


@pytest.fixture
def gaussian_data():
    rng = np.random.RandomState(0)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, 0.3], [0.0, 0.3, 0.5]])
    return rng.multivariate_normal([1.0, -1.0, 0.5], cov, size=2000)
