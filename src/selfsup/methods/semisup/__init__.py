"""Semi-supervised learning from a few labels per class (the survey: J = λs·Js + λu·Ju).

The labelled set is ``labels_per_class`` images of every class, drawn from the training split
with ``label_seed``; the unlabelled pool is the whole split, its labels used only to report
how accurate the pseudo-labels are.  Each step sees ``batch_size`` labelled images and
``unlabelled_ratio`` (μ) times as many unlabelled ones; an epoch is one pass over the pool,
so every method here gets the same steps.  Predictions (``predict``, the ``test_top1`` of
metrics.json) come from an exponential moving average of the classifier network (FixMatch's
evaluation model, rate ``ema``).

One module per method, on a shared base: ``base`` (the labelled set, the mixed batches, the EMA
network, confident pseudo-labels with class balancing, and supervised-only); ``protocols`` holds
the label-fraction protocols.

Class balancing (``balance``, after BOSS, Smith & Conovaloff 2020, and FROST): the confident
predictions of the previous epoch counted per class (n_c) drive ``data``-level resampling
(a pseudo-label of class c is kept with probability min n / n_c; self-training keeps the
min n most confident of each class), ``loss``-level weights (mean n / n_c, normalised to
mean 1 over the classes), or both (``hybrid``); min n is over the classes with a count, and a
class without one is treated as that rarest class.

The pseudo-label figures (rate, accuracy, per-class counts) are counted over an epoch and
reported by the next epoch's start, so the ``epoch_history`` entry of epoch e describes epoch
e − 1 and the last epoch's figures are not reported.
"""
