"""Evaluation, beside (not inside) the device pipeline: COCO mAP through faster-coco-eval /
pycocotools (`metrics`) and bootstrap intervals over the images (`bootstrap`). Used by bench,
calibrate, train and the compression commands through `edgedet.scoring`; the on-device install
never imports it."""
