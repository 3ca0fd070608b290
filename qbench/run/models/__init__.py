"""The papers' architectures registered into timm (:mod:`.zoo`) and the model factory of a run (:mod:`.factory`).

Importing this package registers lenet5, resnet{20..110}_cifar, vgg11_cifar, convnet_aqe_{a..d} and resnet18_cifar
into timm, so ``timm.create_model("resnet20_cifar")`` works like any timm model.
"""

from .factory import create_model, load_checkpoint
from .zoo import ARCHS, CONVNET_AQE_WIDTHS, BasicBlockCifar, CifarResNet, ConvNetAQE, LeNet5, ShortcutA, VGGCifar, adapt_to_32px

__all__ = ["ARCHS", "LeNet5", "ShortcutA", "BasicBlockCifar", "CifarResNet", "VGGCifar", "ConvNetAQE",
           "CONVNET_AQE_WIDTHS", "adapt_to_32px", "create_model", "load_checkpoint"]
