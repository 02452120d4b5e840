"""The research kit: benchmark, ablation, training, samplers, data sets and classifiers.

It depends on the runtime (:mod:`tcpade_core`), never the reverse, and may use scikit-learn,
matplotlib and tqdm (the ``bench`` extra); nothing a ComfyUI node imports lives here.
"""
