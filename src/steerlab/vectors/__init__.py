"""Steering vectors: extraction, the value type, files, llama.cpp export, random controls."""

from steerlab.vectors.extract import Example, extract, read_activations
from steerlab.vectors.gguf_export import export_gguf, read_gguf
from steerlab.vectors.io import check_compatible, load_vector, load_vectors, save_vectors
from steerlab.vectors.random import random_like
from steerlab.vectors.vector import SteeringVector, VectorMeta, VectorSet, data_hash

__all__ = [
    "Example",
    "SteeringVector",
    "VectorMeta",
    "VectorSet",
    "check_compatible",
    "data_hash",
    "export_gguf",
    "extract",
    "load_vector",
    "load_vectors",
    "random_like",
    "read_activations",
    "read_gguf",
    "save_vectors",
]
