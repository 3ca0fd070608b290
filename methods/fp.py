"""Full-precision baseline: the same model, recipe and budget with no quantizer, the reference of every gap."""

from qbench import Method, register_method


@register_method("fp")
class FullPrecision(Method):
    """Full-precision baseline (no weight, activation or input quantizer); run at W32A32 whatever the suite's bits."""

    family = "baseline"
    paper = ""

    def weight_quantizer(self, bits):
        return None

    def input_quantizer(self, bits, signed):
        return None
