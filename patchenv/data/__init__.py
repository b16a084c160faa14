"""Image classification data sets, held on the training device as uint8 tensors.

Following airbench: the whole training split lives on the device, each epoch is a
`torch.randperm` on the device, and augmentation (random crop with 4-pixel padding,
horizontal flip, normalisation) runs as batched tensor ops. No DataLoader in the hot path.

Data sets (all end up as (n, C, S, S) uint8 plus int64 labels; S = 32 unless
``image_size`` asks for another side, 64 for Imagenette):
- ``cifar10``: torchvision's CIFAR-10 loader (``download=True`` fetches it).
- ``fashion_mnist``: the paper's second data set; read offline from Debian's
  ``dataset-fashion-mnist`` files in /usr/share/datasets/fashion-mnist/ when present,
  else torchvision (with ``download``). 28x28 is zero-padded to 32x32.
- ``imagenette``: the paper's third set (its "Imagenette+" is not specified further):
  fastai's 10-class ImageNet subset in torchvision's on-disk layout, resized once on load
  (shorter side to S, centre square) and cached as an .npz next to the files.
- ``digits``: scikit-learn's shipped 8x8 digits (1,797 images, offline), upsampled to
  32x32 with 3 channels so the patch geometry matches CIFAR.
- ``synthetic``: generated from a seed, learnable (class templates plus noise), offline.

One module per source (`cifar10`, `fashion_mnist`, `imagenette`, `digits`, `generated`),
what they return and share (`images`), the name-to-source table (`load`), the on-device
transforms (`transforms`) and the fixed validation and evaluation splits (`splits`).
"""
from patchenv.data.images import (CIFAR10_MEAN, CIFAR10_STD, DatasetCorruptError, DatasetError, DatasetNotFoundError,
                                  ImageData)
from patchenv.data.generated import synthetic
from patchenv.data.load import DATASETS, default_data_root, load_dataset
from patchenv.data.transforms import augment, normalize, to_unit

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "DatasetCorruptError", "DatasetError", "DatasetNotFoundError",
           "ImageData", "augment", "default_data_root", "load_dataset", "normalize", "synthetic", "to_unit"]
