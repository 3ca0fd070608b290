"""Projected coarse gradient (REC: Long, Yin, Xin, *Recurrence of optimum for training weight and activation
quantized networks*, arXiv 2012.05529; spec §6).

``w ← w − η·g̃(Q(w))``: BCGD with ρ = 0 — the same quantizers and activation estimator, no blend, no gradient
cancellation, no clipping — so ``pcg`` vs ``bcgd`` isolates the effect of the blend. The recurrence diagnostics of
spec §6 (loss at Q(w_t), normalised Hamming distance of Q(w_t) to the best epoch's Q, flip rate, visits) are logged
per epoch by the training loop for every quantized method; for this method they are the paper's object of study.
"""

from qbench import register_method

from .bcgd import BCGD


@register_method("pcg")
class ProjectedCoarseGradient(BCGD):
    """Projected coarse gradient: BinaryConnect step at Q(w) with the coarse activation gradient (BCGD, ρ = 0)."""

    family = "update rule"
    paper = "Long, Yin, Xin, Recurrence of optimum for training weight and activation quantized nets, arXiv 2012.05529"
    paper_policy = "binary or ternary weights; as BCGD"
    hparams = {k: v for k, v in BCGD.hparams.items() if k not in ("rho", "rho_rate", "rho_max")}

    def rho_at(self, epoch):
        return 0.0

    def search_space(self, trial):
        return super(BCGD, self).search_space(trial)
