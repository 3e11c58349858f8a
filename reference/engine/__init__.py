"""The engine: the references' training and evaluation loops, COCO scoring, meters and process groups."""
