"""vitjax: a JAX/Flax benchmark for the local (patch-level) representations of pretrained ViTs."""

import setuptools

CORE = [
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "numpy>=1.26",
    "absl-py>=2.1",
    "ml-collections>=1.0",
    "pillow>=10",
    "tifffile>=2024.1",
    "matplotlib>=3.8",
    "scipy>=1.11",
    "scikit-image>=0.22",
]
CONVERT = ["torch>=2.1", "safetensors>=0.4"]
TEST = CONVERT + [
    "torchvision>=0.16",
    "timm>=1.0.15",
    "transformers>=4.45",
    "faiss-cpu>=1.8",
    "scikit-learn>=1.4",
    "cityscapesscripts>=2.2",
    "hypothesis>=6.100",
    "open_clip_torch>=2.24",
    "pytest>=8",
    "pytest-xdist>=3.5",
    "psutil>=5.9",
    "ruff>=0.6",
    # The TFDS route is tested against the real package (ArrayRecord written and read without
    # TensorFlow): the `tfds` extra.
    "tensorflow-datasets>=4.9",
    "array-record>=0.5",
]

setuptools.setup(
    name="vitjax",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(
        include=["vitjax", "vitjax.*", "checkpoints_convert", "checkpoints_convert.*"]
    ),
    package_data={"vitjax": ["data/splits/*.json", "data/splits/*.csv"]},
    install_requires=CORE,
    extras_require={
        "convert": CONVERT,
        "tfds": ["tensorflow-datasets>=4.9", "array-record>=0.5"],
        "test": TEST,
    },
)
