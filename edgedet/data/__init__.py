"""Labelled detection datasets: COCO JSON, Ultralytics YOLO, Pascal VOC and KITTI readers, class
maps between a model's names and a dataset's, and converters between the formats.

>>> from edgedet.data import load_dataset                              # doctest: +SKIP
>>> ds = load_dataset("coco_tiny_val2017")                             # doctest: +SKIP
>>> ds.format, len(ds), ds.class_names[:2]                             # doctest: +SKIP
('coco', 80, ('person', 'bicycle'))
"""

from __future__ import annotations

from ..errors import DatasetError
from .classmap import DEFAULT_ALIASES, ClassMap, map_classes
from .coco import coco_category_ids, coco_gt_dict, write_coco_json
from .dataset import ANY_CLASS, Annotation, DetectionDataset, Sample
from .kitti import KITTI_CLASSES
from .readers import detect_layout, drop_unreadable, load_dataset
from .writers import convert_dataset

__all__ = [
    "ANY_CLASS",
    "DEFAULT_ALIASES",
    "KITTI_CLASSES",
    "Annotation",
    "ClassMap",
    "DatasetError",
    "DetectionDataset",
    "Sample",
    "coco_category_ids",
    "coco_gt_dict",
    "convert_dataset",
    "detect_layout",
    "drop_unreadable",
    "load_dataset",
    "map_classes",
    "write_coco_json",
]
