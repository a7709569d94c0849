"""Data layer: the VinDr-Mammo index, DICOM decoding, Mammo-CLIP preprocessing and the phantom generator."""
