import pytest
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """The test machines' cores are shared: with two OpenMP threads a busy machine
    stalls each step on thread barriers (10x slower here), with one it does not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
