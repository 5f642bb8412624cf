"""The outlier wing: a classifier on a frozen encoder, virtual outlier synthesis (VOS), synthesis of class
activations at controlled dissimilarity with their nearest real texts, a labelling loop, and OOD evaluation.

Names are imported lazily: ``import neuronmap.outliers`` costs nothing until one is used.
"""

from __future__ import annotations

from neuronmap.lazy import lazy_exports

_LAZY = {
    "load_labelled": "neuronmap.outliers.data",
    "LabelledTexts": "neuronmap.outliers.data",
    "split_labels": "neuronmap.outliers.data",
    "embed_texts": "neuronmap.outliers.embed",
    "MLPHead": "neuronmap.outliers.classifier",
    "Classifier": "neuronmap.outliers.classifier",
    "SharedGaussian": "neuronmap.outliers.generative",
    "ClassGaussian": "neuronmap.outliers.generative",
    "GaussianMixture": "neuronmap.outliers.generative",
    "make_generative": "neuronmap.outliers.generative",
    "VirtualOutlierSynthesizer": "neuronmap.outliers.vos",
    "TrainConfig": "neuronmap.outliers.vos",
    "energy": "neuronmap.outliers.vos",
    "uncertainty_loss": "neuronmap.outliers.vos",
    "fit_head": "neuronmap.outliers.vos",
    "DataConfig": "neuronmap.outliers.train",
    "train_classifier": "neuronmap.outliers.train",
    "synthesize": "neuronmap.outliers.synthesis",
    "boundary_points": "neuronmap.outliers.synthesis",
    "RefineConfig": "neuronmap.outliers.refinement",
    "refine": "neuronmap.outliers.refinement",
    "evaluate": "neuronmap.outliers.evaluation",
    "auroc": "neuronmap.outliers.metrics",
    "fpr_at_tpr": "neuronmap.outliers.metrics",
    "energy_score": "neuronmap.outliers.metrics",
    "msp_score": "neuronmap.outliers.metrics",
}

__all__ = list(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
