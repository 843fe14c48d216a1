"""Pages to look at: a dataset to browse (``show``), and the parts other pages share
(thumbnail sheets, the page writer) such as ``reidmodels``' failure report."""

from .dataset import show

__all__ = ["show"]
